"""PostgreSQL storage: table definitions, statements, and the commit runner."""
