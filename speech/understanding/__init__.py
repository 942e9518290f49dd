"""Chinese understanding: normalizers and the extractors that fill claim-report slots."""
