using Dapper;
using Npgsql;

namespace RowLock.WebSample;

/// <summary>The sample's tables, created at startup with a few demo rows (a real service would use migrations).</summary>
public static class Schema
{
    public static async Task EnsureCreatedAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        await connection.ExecuteAsync(new CommandDefinition(
            """
            CREATE TABLE IF NOT EXISTS stock (id int PRIMARY KEY, name text NOT NULL, qty int NOT NULL CHECK (qty >= 0));
            CREATE TABLE IF NOT EXISTS jobs (id bigserial PRIMARY KEY, payload text NOT NULL, done_at timestamptz, done_by text);
            CREATE TABLE IF NOT EXISTS documents (id int PRIMARY KEY, body text NOT NULL, version int NOT NULL);
            CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY, total numeric(12,2) NOT NULL, line_count int NOT NULL);
            INSERT INTO stock VALUES (1, 'widget', 100) ON CONFLICT DO NOTHING;
            INSERT INTO documents VALUES (1, 'hello', 0) ON CONFLICT DO NOTHING;
            INSERT INTO orders VALUES (1, 0, 0) ON CONFLICT DO NOTHING;
            INSERT INTO jobs (payload) SELECT 'demo job ' || n FROM generate_series(1, 10) AS n WHERE NOT EXISTS (SELECT FROM jobs);
            """,
            cancellationToken: cancellationToken));
    }
}
