"""Campaign scheduling (renewal, missing-document and survey reminders)."""
