"""Storage: tables, schema migrations, call records, flow results, policy records and the delivery outbox."""
