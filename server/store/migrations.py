"""Versioned schema migrations. Append new ones; never edit one that has shipped.

The policy tables (receipts, budgets, escalations, pull requests) key on `issues.id`, the issue lineage every
policy decision is counted against.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE projects (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            public_key TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL
        );
        CREATE TABLE issues (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id),
            fingerprint TEXT NOT NULL,
            title TEXT NOT NULL,
            exception_type TEXT,
            culprit TEXT,
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL,
            event_count INTEGER NOT NULL DEFAULT 0,
            user_count INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'unresolved',
            UNIQUE (project_id, fingerprint)
        );
        CREATE INDEX issues_last_seen ON issues (project_id, last_seen);
        CREATE INDEX issues_event_count ON issues (project_id, event_count);
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id),
            event_id TEXT NOT NULL,
            issue_id INTEGER NOT NULL REFERENCES issues(id),
            timestamp REAL NOT NULL,
            received REAL NOT NULL,
            release TEXT,
            environment TEXT,
            level TEXT,
            exception_type TEXT,
            culprit_module TEXT,
            culprit_function TEXT,
            culprit_filename TEXT,
            user_hash TEXT,
            source TEXT NOT NULL,
            payload TEXT NOT NULL,
            UNIQUE (project_id, event_id)
        );
        CREATE INDEX events_event_id ON events (event_id);
        CREATE INDEX events_issue_time ON events (issue_id, timestamp);
        CREATE INDEX events_release ON events (project_id, release);
        CREATE TABLE issue_users (
            issue_id INTEGER NOT NULL REFERENCES issues(id),
            user_hash TEXT NOT NULL,
            PRIMARY KEY (issue_id, user_hash)
        ) WITHOUT ROWID;
        CREATE TABLE issue_hourly (
            issue_id INTEGER NOT NULL REFERENCES issues(id),
            hour INTEGER NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (issue_id, hour)
        ) WITHOUT ROWID;
        CREATE TABLE releases (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id),
            version TEXT NOT NULL,
            commit_sha TEXT,
            first_event REAL NOT NULL,
            UNIQUE (project_id, version)
        );
        CREATE TABLE deploys (
            id INTEGER PRIMARY KEY,
            project_id INTEGER REFERENCES projects(id),
            release TEXT NOT NULL,
            commit_sha TEXT NOT NULL,
            environment TEXT NOT NULL,
            deployed_at REAL NOT NULL
        );
        CREATE INDEX deploys_time ON deploys (environment, deployed_at);
        """,
    ),
    (
        2,
        """
        CREATE TABLE issue_frames (
            issue_id INTEGER NOT NULL REFERENCES issues(id),
            filename TEXT NOT NULL,
            module TEXT NOT NULL DEFAULT '',
            function TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (issue_id, filename, module, function)
        ) WITHOUT ROWID;
        CREATE INDEX issue_frames_filename ON issue_frames (filename);
        CREATE INDEX issue_frames_module ON issue_frames (module);
        INSERT OR IGNORE INTO issue_frames (issue_id, filename, module, function)
            SELECT DISTINCT e.issue_id, json_extract(f.value, '$.filename'),
                   coalesce(json_extract(f.value, '$.module'), ''), coalesce(json_extract(f.value, '$.function'), '')
            FROM events e, json_each(e.payload, '$.exception.values') x, json_each(x.value, '$.stacktrace.frames') f
            WHERE json_extract(f.value, '$.in_app') = 1 AND json_extract(f.value, '$.filename') IS NOT NULL
        """,
    ),
    (
        3,
        """
        CREATE TABLE receipts (
            id TEXT PRIMARY KEY,
            issue_id INTEGER NOT NULL REFERENCES issues(id),
            event_id TEXT NOT NULL,
            commit_sha TEXT NOT NULL,
            test_path TEXT NOT NULL,
            test_name TEXT NOT NULL,
            test_code TEXT NOT NULL,
            test_sha256 TEXT NOT NULL,
            fix_diff TEXT NOT NULL,
            fix_sha256 TEXT NOT NULL,
            passed INTEGER NOT NULL,
            gates TEXT NOT NULL,
            cpu_seconds REAL NOT NULL,
            created_at REAL NOT NULL,
            mutation TEXT
        );
        CREATE INDEX receipts_issue ON receipts (issue_id, created_at);
        CREATE TABLE budgets (
            issue_id INTEGER PRIMARY KEY REFERENCES issues(id),
            runs INTEGER NOT NULL DEFAULT 0,
            cpu_seconds REAL NOT NULL DEFAULT 0,
            exhausted_at REAL,
            reset_at REAL
        );
        CREATE TABLE escalations (
            id INTEGER PRIMARY KEY,
            issue_id INTEGER REFERENCES issues(id),
            kind TEXT NOT NULL,
            reason TEXT NOT NULL,
            created_at REAL NOT NULL,
            resolved_at REAL
        );
        CREATE INDEX escalations_open ON escalations (resolved_at, created_at)
        """,
    ),
    (
        4,
        """
        CREATE TABLE pull_requests (
            id INTEGER PRIMARY KEY,
            issue_id INTEGER NOT NULL REFERENCES issues(id),
            receipt_id TEXT NOT NULL REFERENCES receipts(id),
            branch TEXT NOT NULL,
            commit_sha TEXT NOT NULL,
            url TEXT,
            number INTEGER,
            mode TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX pull_requests_issue ON pull_requests (issue_id);
        CREATE INDEX pull_requests_time ON pull_requests (created_at);
        CREATE TABLE provenance (
            id INTEGER PRIMARY KEY,
            test_node TEXT NOT NULL,
            test_path TEXT NOT NULL,
            record TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE INDEX provenance_test ON provenance (test_path)
        """,
    ),
    (
        5,
        """
        ALTER TABLE budgets ADD COLUMN synthesis_attempts INTEGER NOT NULL DEFAULT 0
        """,
    ),
    (
        6,
        """
        ALTER TABLE receipts ADD COLUMN support_files TEXT
        """,
    ),
    (
        7,
        """
        DROP TABLE releases
        """,
    ),
    (
        8,
        """
        CREATE TABLE session_hours (
            project_id INTEGER NOT NULL REFERENCES projects(id),
            release TEXT NOT NULL,
            environment TEXT NOT NULL,
            hour INTEGER NOT NULL,
            started INTEGER NOT NULL DEFAULT 0,
            errored INTEGER NOT NULL DEFAULT 0,
            crashed INTEGER NOT NULL DEFAULT 0,
            abnormal INTEGER NOT NULL DEFAULT 0,
            users INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (project_id, release, environment, hour)
        ) WITHOUT ROWID;
        CREATE INDEX session_hours_time ON session_hours (hour);
        CREATE TABLE session_users (
            project_id INTEGER NOT NULL,
            release TEXT NOT NULL,
            environment TEXT NOT NULL,
            hour INTEGER NOT NULL,
            user_hash TEXT NOT NULL,
            PRIMARY KEY (project_id, release, environment, hour, user_hash)
        ) WITHOUT ROWID;
        CREATE TABLE transaction_hours (
            project_id INTEGER NOT NULL REFERENCES projects(id),
            name TEXT NOT NULL,
            release TEXT NOT NULL,
            environment TEXT NOT NULL,
            hour INTEGER NOT NULL,
            count INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            durations TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (project_id, name, release, environment, hour)
        ) WITHOUT ROWID;
        CREATE INDEX transaction_hours_time ON transaction_hours (hour);
        CREATE TABLE transaction_days (
            project_id INTEGER NOT NULL REFERENCES projects(id),
            name TEXT NOT NULL,
            release TEXT NOT NULL,
            environment TEXT NOT NULL,
            day INTEGER NOT NULL,
            count INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            durations TEXT NOT NULL DEFAULT '{}',
            PRIMARY KEY (project_id, name, release, environment, day)
        ) WITHOUT ROWID;
        CREATE TABLE release_packages (
            project_id INTEGER NOT NULL REFERENCES projects(id),
            release TEXT NOT NULL,
            packages TEXT NOT NULL,
            seen_at REAL NOT NULL,
            PRIMARY KEY (project_id, release)
        )
        """,
    ),
    (
        9,
        """
        CREATE TABLE session_days (
            project_id INTEGER NOT NULL REFERENCES projects(id),
            release TEXT NOT NULL,
            environment TEXT NOT NULL,
            day INTEGER NOT NULL,
            started INTEGER NOT NULL DEFAULT 0,
            errored INTEGER NOT NULL DEFAULT 0,
            crashed INTEGER NOT NULL DEFAULT 0,
            abnormal INTEGER NOT NULL DEFAULT 0,
            users INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (project_id, release, environment, day)
        ) WITHOUT ROWID;
        CREATE INDEX session_days_time ON session_days (day);
        CREATE TABLE session_day_users (
            project_id INTEGER NOT NULL,
            release TEXT NOT NULL,
            environment TEXT NOT NULL,
            day INTEGER NOT NULL,
            user_hash TEXT NOT NULL,
            PRIMARY KEY (project_id, release, environment, day, user_hash)
        ) WITHOUT ROWID;
        CREATE INDEX session_day_users_time ON session_day_users (day);
        INSERT INTO session_day_users (project_id, release, environment, day, user_hash)
            SELECT DISTINCT project_id, release, environment, hour / 24, user_hash FROM session_users;
        INSERT INTO session_days (project_id, release, environment, day, started, errored, crashed, abnormal, users)
            SELECT h.project_id, h.release, h.environment, h.hour / 24, SUM(h.started), SUM(h.errored),
                   SUM(h.crashed), SUM(h.abnormal), 0
            FROM session_hours h GROUP BY h.project_id, h.release, h.environment, h.hour / 24;
        UPDATE session_days SET users = (
            SELECT COUNT(*) FROM session_day_users u WHERE u.project_id = session_days.project_id
            AND u.release = session_days.release AND u.environment = session_days.environment
            AND u.day = session_days.day
        );
        DROP TABLE session_users;
        ALTER TABLE session_hours DROP COLUMN users;
        CREATE INDEX transaction_days_time ON transaction_days (day);
        CREATE INDEX events_time ON events (timestamp);
        CREATE TABLE issue_releases (
            issue_id INTEGER NOT NULL REFERENCES issues(id),
            release TEXT NOT NULL,
            transaction_name TEXT NOT NULL,
            last_seen REAL NOT NULL,
            PRIMARY KEY (issue_id, release, transaction_name)
        ) WITHOUT ROWID;
        INSERT INTO issue_releases (issue_id, release, transaction_name, last_seen)
            SELECT issue_id, coalesce(release, ''),
                   coalesce(substr(json_extract(payload, '$.transaction'), 1, 200), ''), MAX(timestamp)
            FROM events WHERE release IS NOT NULL OR json_extract(payload, '$.transaction') IS NOT NULL
            GROUP BY 1, 2, 3;
        """,
    ),
    (
        10,
        """
        ALTER TABLE issues ADD COLUMN regressions INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE issues ADD COLUMN resolved_at REAL;
        ALTER TABLE issues ADD COLUMN resolved_in TEXT;
        ALTER TABLE issues ADD COLUMN regressed_at REAL
        """,
    ),
    (
        11,
        """
        CREATE TABLE signals (
            issue_id INTEGER PRIMARY KEY REFERENCES issues(id),
            classification TEXT NOT NULL,
            onset REAL,
            priority REAL NOT NULL,
            confidence REAL NOT NULL,
            tier INTEGER NOT NULL,
            report TEXT NOT NULL,
            decision TEXT NOT NULL DEFAULT 'pending',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE signal_priorities (
            issue_id INTEGER NOT NULL REFERENCES issues(id),
            at REAL NOT NULL,
            priority REAL NOT NULL,
            components TEXT NOT NULL,
            PRIMARY KEY (issue_id, at)
        ) WITHOUT ROWID;
        CREATE TABLE triage_decisions (
            id INTEGER PRIMARY KEY,
            issue_id INTEGER NOT NULL REFERENCES issues(id),
            decision TEXT NOT NULL,
            who TEXT NOT NULL,
            why TEXT NOT NULL,
            classification TEXT NOT NULL,
            at REAL NOT NULL
        )
        """,
    ),
    (
        12,
        """
        ALTER TABLE signals ADD COLUMN filed TEXT
        """,
    ),
    (
        13,
        """
        ALTER TABLE deploys ADD COLUMN source TEXT NOT NULL DEFAULT 'operator';
        UPDATE deploys SET source = 'unknown';
        ALTER TABLE issue_releases ADD COLUMN first_seen REAL;
        UPDATE issue_releases SET first_seen = coalesce(
            (SELECT MIN(e.timestamp) FROM events e
             WHERE e.issue_id = issue_releases.issue_id AND coalesce(e.release, '') = issue_releases.release),
            (SELECT i.first_seen FROM issues i WHERE i.id = issue_releases.issue_id)
        );
        ALTER TABLE signals ADD COLUMN actionable_at REAL;
        UPDATE signals SET actionable_at = updated_at WHERE classification = 'actionable';
        ALTER TABLE release_packages ADD COLUMN conflicts INTEGER NOT NULL DEFAULT 0
        """,
    ),
    (
        14,
        """
        CREATE TABLE merges (
            pull_request_id INTEGER PRIMARY KEY REFERENCES pull_requests(id),
            merge_commit TEXT NOT NULL,
            merged_at REAL NOT NULL,
            how TEXT NOT NULL,
            deploy_id INTEGER REFERENCES deploys(id)
        );
        CREATE TABLE verdicts (
            id INTEGER PRIMARY KEY,
            issue_id INTEGER NOT NULL REFERENCES issues(id),
            pull_request_id INTEGER NOT NULL REFERENCES pull_requests(id),
            verdict TEXT NOT NULL,
            numbers TEXT NOT NULL,
            at REAL NOT NULL
        );
        CREATE INDEX verdicts_issue ON verdicts (issue_id, id);
        CREATE TABLE andon_cords (
            id INTEGER PRIMARY KEY,
            deploy_id INTEGER NOT NULL UNIQUE REFERENCES deploys(id),
            release TEXT NOT NULL,
            environment TEXT NOT NULL,
            commit_sha TEXT NOT NULL,
            previous_commit TEXT,
            paths TEXT NOT NULL,
            evidence TEXT NOT NULL,
            blast_radius TEXT NOT NULL,
            revert TEXT,
            escalation TEXT,
            pulled_at REAL NOT NULL,
            released_at REAL,
            released_by TEXT,
            release_why TEXT
        );
        CREATE TABLE agent_costs (
            id INTEGER PRIMARY KEY,
            issue_id INTEGER NOT NULL REFERENCES issues(id),
            tokens INTEGER NOT NULL,
            cost_usd REAL NOT NULL,
            cpu_seconds REAL NOT NULL,
            reporter TEXT NOT NULL,
            note TEXT NOT NULL,
            at REAL NOT NULL
        );
        CREATE INDEX agent_costs_issue ON agent_costs (issue_id, at);
        ALTER TABLE budgets ADD COLUMN tokens INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE budgets ADD COLUMN cost_usd REAL NOT NULL DEFAULT 0;
        ALTER TABLE budgets ADD COLUMN no_effect_streak INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE budgets ADD COLUMN halted_at REAL;
        ALTER TABLE budgets ADD COLUMN halted_why TEXT;
        CREATE TABLE budget_resets (
            id INTEGER PRIMARY KEY,
            issue_id INTEGER NOT NULL REFERENCES issues(id),
            who TEXT NOT NULL,
            why TEXT NOT NULL,
            before TEXT NOT NULL,
            at REAL NOT NULL
        );
        CREATE TABLE attributions (
            issue_id INTEGER PRIMARY KEY REFERENCES issues(id),
            deploy_id INTEGER REFERENCES deploys(id),
            commit_sha TEXT NOT NULL,
            author TEXT NOT NULL,
            minutes_after REAL NOT NULL,
            notified TEXT,
            at REAL NOT NULL
        );
        ALTER TABLE provenance ADD COLUMN pull_request_id INTEGER;
        UPDATE provenance SET pull_request_id = (
            SELECT p.id FROM pull_requests p
            WHERE p.receipt_id = json_extract(provenance.record, '$.receipt_id')
              AND p.branch = json_extract(provenance.record, '$.pull_request.branch')
            ORDER BY p.id DESC LIMIT 1
        )
        """,
    ),
    (
        15,
        """
        CREATE TABLE ci_runs (
            id INTEGER PRIMARY KEY,
            commit_sha TEXT NOT NULL,
            branch TEXT,
            run_url TEXT,
            job TEXT,
            tests INTEGER NOT NULL,
            failed INTEGER NOT NULL,
            digest TEXT NOT NULL UNIQUE,
            at REAL NOT NULL
        );
        CREATE INDEX ci_runs_commit ON ci_runs (commit_sha);
        CREATE TABLE ci_failures (
            id INTEGER PRIMARY KEY,
            fingerprint TEXT NOT NULL UNIQUE,
            test_id TEXT NOT NULL,
            exception_type TEXT NOT NULL,
            location TEXT NOT NULL,
            frames TEXT NOT NULL,
            message TEXT NOT NULL,
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL,
            count INTEGER NOT NULL
        );
        CREATE TABLE ci_results (
            run_id INTEGER NOT NULL REFERENCES ci_runs(id),
            test_id TEXT NOT NULL,
            outcome TEXT NOT NULL,
            reruns INTEGER NOT NULL,
            seconds REAL NOT NULL,
            failure_id INTEGER REFERENCES ci_failures(id),
            PRIMARY KEY (run_id, test_id)
        ) WITHOUT ROWID;
        CREATE INDEX ci_results_test ON ci_results (test_id)
        """,
    ),
    (
        16,
        """
        CREATE TABLE ci_verdicts (
            id INTEGER PRIMARY KEY,
            failure_id INTEGER NOT NULL REFERENCES ci_failures(id),
            kind TEXT NOT NULL,
            decided_by TEXT NOT NULL,
            why TEXT NOT NULL,
            at REAL NOT NULL
        );
        CREATE INDEX ci_verdicts_failure ON ci_verdicts (failure_id);
        CREATE TABLE heals (
            id TEXT PRIMARY KEY,
            failure_id INTEGER NOT NULL REFERENCES ci_failures(id),
            commit_sha TEXT NOT NULL,
            test_path TEXT NOT NULL,
            test_name TEXT NOT NULL,
            old_sha256 TEXT NOT NULL,
            test_code TEXT NOT NULL,
            test_sha256 TEXT NOT NULL,
            classification TEXT NOT NULL,
            gates TEXT NOT NULL,
            mutation TEXT,
            passed INTEGER NOT NULL,
            cpu_seconds REAL NOT NULL,
            created_at REAL NOT NULL,
            shipped TEXT
        );
        CREATE INDEX heals_failure ON heals (failure_id);
        CREATE TABLE ci_selections (
            id INTEGER PRIMARY KEY,
            base TEXT NOT NULL,
            head TEXT NOT NULL,
            selected TEXT NOT NULL,
            test_files INTEGER NOT NULL,
            at REAL NOT NULL
        );
        CREATE INDEX ci_selections_head ON ci_selections (head);
        ALTER TABLE pull_requests ADD COLUMN auto_merge TEXT
        """,
    ),
    (
        17,
        """
        CREATE INDEX issues_all_last_seen ON issues (last_seen);
        CREATE INDEX issues_all_event_count ON issues (event_count);
        CREATE INDEX issues_status_last_seen ON issues (status, last_seen);
        CREATE INDEX issues_status_event_count ON issues (status, event_count);
        CREATE INDEX issues_status_first_seen ON issues (status, first_seen);
        CREATE INDEX issues_status_user_count ON issues (status, user_count);
        CREATE INDEX issues_project_status_last_seen ON issues (project_id, status, last_seen);
        CREATE INDEX issues_project_status_event_count ON issues (project_id, status, event_count);
        CREATE INDEX issues_project_status_first_seen ON issues (project_id, status, first_seen);
        CREATE INDEX issues_project_status_user_count ON issues (project_id, status, user_count);
        CREATE TABLE issue_counts (
            project_id INTEGER NOT NULL,
            status TEXT NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (project_id, status)
        ) WITHOUT ROWID;
        INSERT INTO issue_counts (project_id, status, n)
            SELECT project_id, status, count(*) FROM issues GROUP BY project_id, status;
        CREATE TRIGGER issue_counts_insert AFTER INSERT ON issues BEGIN
            INSERT INTO issue_counts (project_id, status, n) VALUES (new.project_id, new.status, 1)
                ON CONFLICT (project_id, status) DO UPDATE SET n = n + 1;
        END;
        CREATE TRIGGER issue_counts_delete AFTER DELETE ON issues BEGIN
            UPDATE issue_counts SET n = n - 1 WHERE project_id = old.project_id AND status = old.status;
        END;
        CREATE TRIGGER issue_counts_update AFTER UPDATE OF status, project_id ON issues
            WHEN old.status IS NOT new.status OR old.project_id IS NOT new.project_id BEGIN
            UPDATE issue_counts SET n = n - 1 WHERE project_id = old.project_id AND status = old.status;
            INSERT INTO issue_counts (project_id, status, n) VALUES (new.project_id, new.status, 1)
                ON CONFLICT (project_id, status) DO UPDATE SET n = n + 1;
        END
        """,
    ),
    (
        18,
        """
        CREATE TABLE events_18 (
            id INTEGER PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id),
            event_id TEXT NOT NULL,
            issue_id INTEGER NOT NULL REFERENCES issues(id),
            timestamp REAL NOT NULL,
            received REAL NOT NULL,
            release TEXT,
            environment TEXT,
            level TEXT,
            exception_type TEXT,
            culprit_module TEXT,
            culprit_function TEXT,
            culprit_filename TEXT,
            user_hash TEXT,
            source TEXT NOT NULL,
            payload TEXT,
            input_digest TEXT,
            summary TEXT,
            UNIQUE (project_id, event_id)
        );
        INSERT INTO events_18 (id, project_id, event_id, issue_id, timestamp, received, release, environment, level,
                               exception_type, culprit_module, culprit_function, culprit_filename, user_hash,
                               source, payload)
            SELECT id, project_id, event_id, issue_id, timestamp, received, release, environment, level,
                   exception_type, culprit_module, culprit_function, culprit_filename, user_hash, source, payload
            FROM events;
        DROP TABLE events;
        ALTER TABLE events_18 RENAME TO events;
        CREATE INDEX events_event_id ON events (event_id);
        CREATE INDEX events_issue_time ON events (issue_id, timestamp);
        CREATE INDEX events_release ON events (project_id, release);
        CREATE INDEX events_time ON events (timestamp);
        CREATE INDEX events_kept_time ON events (issue_id, timestamp) WHERE payload IS NOT NULL;
        CREATE INDEX events_kept_release ON events (issue_id, release) WHERE payload IS NOT NULL;
        CREATE INDEX events_inputs ON events (issue_id, input_digest)
            WHERE payload IS NOT NULL AND input_digest IS NOT NULL
        """,
    ),
    (
        19,  # (id in the indexes: most issues share priority -1 until triaged; PostgreSQL orders ties by id from it)
        """
        ALTER TABLE issues ADD COLUMN priority REAL NOT NULL DEFAULT -1;
        UPDATE issues SET priority = coalesce((SELECT s.priority FROM signals s WHERE s.issue_id = issues.id), -1);
        CREATE INDEX issues_all_priority ON issues (priority, id);
        CREATE INDEX issues_project_priority ON issues (project_id, priority, id);
        CREATE INDEX issues_status_priority ON issues (status, priority, id);
        CREATE INDEX issues_project_status_priority ON issues (project_id, status, priority, id)
        """,
    ),
)

# PostgreSQL stores begin empty, at the newest version: what the data statements of migrations before this one did
# (backfills of SQLite stores that held events) has nothing to do there (`db.migration_statements`).
SQLITE_ONLY_BEFORE = 18

# Migrations whose PostgreSQL text differs from a translation of SQLite's (triggers are PL/pgSQL there; a column
# loses NOT NULL in place where SQLite rebuilds its table).
POSTGRES_MIGRATIONS: dict[int, tuple[str, ...]] = {
    17: (
        "CREATE INDEX issues_all_last_seen ON issues (last_seen)",
        "CREATE INDEX issues_all_event_count ON issues (event_count)",
        "CREATE INDEX issues_status_last_seen ON issues (status, last_seen)",
        "CREATE INDEX issues_status_event_count ON issues (status, event_count)",
        "CREATE INDEX issues_status_first_seen ON issues (status, first_seen)",
        "CREATE INDEX issues_status_user_count ON issues (status, user_count)",
        "CREATE INDEX issues_project_status_last_seen ON issues (project_id, status, last_seen)",
        "CREATE INDEX issues_project_status_event_count ON issues (project_id, status, event_count)",
        "CREATE INDEX issues_project_status_first_seen ON issues (project_id, status, first_seen)",
        "CREATE INDEX issues_project_status_user_count ON issues (project_id, status, user_count)",
        "CREATE TABLE issue_counts (project_id BIGINT NOT NULL, status TEXT NOT NULL, n BIGINT NOT NULL,"
        " PRIMARY KEY (project_id, status))",
        """
        CREATE FUNCTION prodloop_issue_counts() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP IN ('UPDATE', 'DELETE') THEN
                UPDATE issue_counts SET n = n - 1 WHERE project_id = OLD.project_id AND status = OLD.status;
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') THEN
                INSERT INTO issue_counts AS c (project_id, status, n) VALUES (NEW.project_id, NEW.status, 1)
                    ON CONFLICT (project_id, status) DO UPDATE SET n = c.n + 1;
            END IF;
            RETURN NULL;
        END $$
        """,
        "CREATE TRIGGER issue_counts_insert_delete AFTER INSERT OR DELETE ON issues"
        " FOR EACH ROW EXECUTE FUNCTION prodloop_issue_counts()",
        "CREATE TRIGGER issue_counts_update AFTER UPDATE OF status, project_id ON issues FOR EACH ROW"
        " WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.project_id IS DISTINCT FROM NEW.project_id)"
        " EXECUTE FUNCTION prodloop_issue_counts()",
    ),
    # Events counted without their payload (ingest keeps payloads for what the loop needs): the payload may be
    # missing; a kept event carries its culprit frame's input digest, a counted one the few fields triage reads.
    18: (
        "ALTER TABLE events ALTER COLUMN payload DROP NOT NULL",
        "ALTER TABLE events ADD COLUMN input_digest TEXT",
        "ALTER TABLE events ADD COLUMN summary TEXT",
        "CREATE INDEX events_kept_time ON events (issue_id, timestamp) WHERE payload IS NOT NULL",
        "CREATE INDEX events_kept_release ON events (issue_id, release) WHERE payload IS NOT NULL",
        "CREATE INDEX events_inputs ON events (issue_id, input_digest)"
        " WHERE payload IS NOT NULL AND input_digest IS NOT NULL",
    ),
}
