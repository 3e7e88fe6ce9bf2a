"""The sqlite schema and its migrations (persistence, DESIGN.md §7).

`PRAGMA user_version` is the schema version. Migrations are append-only: a released step is
never edited, a change is a new step, so any older node file upgrades in place. Big integers
(job ids, game ids, wei amounts) are stored as decimal TEXT: sqlite integers stop at 2^63
while the chain's are uint256.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE jobs (
            job TEXT PRIMARY KEY,
            model BLOB NOT NULL,
            input BLOB NOT NULL,
            config BLOB NOT NULL,
            status TEXT NOT NULL,
            block INTEGER NOT NULL,
            deadline INTEGER,
            reward TEXT,
            requester TEXT,
            updated_at REAL NOT NULL
        );
        CREATE INDEX jobs_status ON jobs(status);

        CREATE TABLE commitments (
            job TEXT NOT NULL,
            executor TEXT NOT NULL,
            output BLOB NOT NULL,
            output_hash BLOB NOT NULL,
            trace_root BLOB NOT NULL,
            trace_length INTEGER NOT NULL,
            bond TEXT,
            tx_id INTEGER REFERENCES txs(id),
            status TEXT NOT NULL,
            block INTEGER,
            updated_at REAL NOT NULL,
            PRIMARY KEY (job, executor)
        );
        CREATE INDEX commitments_status ON commitments(status);

        CREATE TABLE traces (
            job TEXT PRIMARY KEY,
            trace_root BLOB NOT NULL,
            op_hashes BLOB NOT NULL,
            output_roots BLOB NOT NULL,
            dump_path TEXT,
            created_at REAL NOT NULL
        );

        CREATE TABLE games (
            game TEXT PRIMARY KEY,
            job TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('defender', 'challenger')),
            opponent TEXT,
            phase TEXT NOT NULL,
            level INTEGER NOT NULL DEFAULT 0,
            node INTEGER NOT NULL DEFAULT 0,
            our_deadline INTEGER,
            their_deadline INTEGER,
            status TEXT NOT NULL,
            state BLOB,
            updated_at REAL NOT NULL
        );
        CREATE INDEX games_status ON games(status);

        CREATE TABLE moves (
            game TEXT NOT NULL REFERENCES games(game),
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            payload BLOB,
            tx_id INTEGER REFERENCES txs(id),
            created_at REAL NOT NULL,
            PRIMARY KEY (game, seq)
        );

        CREATE TABLE txs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL UNIQUE,
            purpose TEXT NOT NULL,
            sender TEXT,
            nonce INTEGER,
            tx_hash BLOB,
            raw BLOB,
            status TEXT NOT NULL,
            block INTEGER,
            error TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE INDEX txs_status ON txs(status);

        CREATE TABLE claims (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            job TEXT NOT NULL DEFAULT '',
            game TEXT NOT NULL DEFAULT '',
            amount TEXT,
            available_at INTEGER,
            status TEXT NOT NULL,
            tx_id INTEGER REFERENCES txs(id),
            updated_at REAL NOT NULL,
            UNIQUE (kind, job, game)
        );
        CREATE INDEX claims_status ON claims(status);

        CREATE TABLE cursors (
            name TEXT PRIMARY KEY,
            block INTEGER NOT NULL,
            block_hash BLOB,
            updated_at REAL NOT NULL
        );
        """,
    ),
    (
        2,
        """
        -- Reorg-aware watching: the hashes of recently processed blocks per watcher, so a
        -- restarted watcher finds the fork point instead of trusting its last cursor.
        CREATE TABLE blocks (
            watcher TEXT NOT NULL,
            number INTEGER NOT NULL,
            hash BLOB NOT NULL,
            PRIMARY KEY (watcher, number)
        );
        CREATE TABLE kv (
            key TEXT PRIMARY KEY,
            value BLOB NOT NULL
        );
        """,
    ),
]

LATEST_VERSION = MIGRATIONS[-1][0]
