"""SQLite engine options: WAL, and one fsync per commit only when the URL asks for it."""

import asyncio, pytest
from sqlalchemy import text
from gateway.storage.database import create_engine

def test_sqlite_commits_without_an_fsync_each_unless_the_url_asks(tmp_path):
    async def mode(url):
        engine = create_engine(url)
        async with engine.connect() as conn:
            value = (await conn.execute(text("PRAGMA synchronous"))).scalar_one()
        await engine.dispose()
        return value
    base = f"sqlite+aiosqlite:///{tmp_path}/x.db"
    assert asyncio.run(mode(base)) == 1  # NORMAL
    assert asyncio.run(mode(base + "?synchronous=full")) == 2
    with pytest.raises(ValueError, match="synchronous='sometimes'"):
        create_engine(base + "?synchronous=sometimes")
