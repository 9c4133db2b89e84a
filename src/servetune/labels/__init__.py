"""Labels from users: the store of held-out uploads, shown predictions' feedback and review labels.

The store (store.py) is SQLite on one machine or PostgreSQL for several replicas, with versioned schema
migrations (migrate.py, migrations/NNNN_*.sql). The server writes to it only through a background thread
(writer.py), so serving never waits on it; stats.py, export.py and label_studio.py read it for
`servetune labels`.
"""
