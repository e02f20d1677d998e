"""Storage: versioned migrations, the idempotent writer, queries and demo seed (psycopg lives here)."""
