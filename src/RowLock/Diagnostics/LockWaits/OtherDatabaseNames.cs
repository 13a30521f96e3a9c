using Npgsql;

namespace RowLock.Diagnostics.LockWaits;

/// <summary>Names the tables of other databases in an all-databases snapshot: pg_class is per database.</summary>
internal static class OtherDatabaseNames
{
    public static async Task ResolveAsync(string connectionString, LockWaitSnapshot snapshot, CancellationToken cancellationToken)
    {
        var unnamed = snapshot.Waiting
            .Select(s => s.WaitingFor)
            .OfType<LockWaitTarget>()
            .Where(t => t.IsInOtherDatabase && t.Relation is null && t.RelationId is not null && t.Database is not null)
            .GroupBy(t => t.Database!);
        foreach (var database in unnamed)
        {
            Dictionary<uint, string> names;
            try
            {
                names = await ReadNamesAsync(connectionString, database.Key, database.Select(t => (long)t.RelationId!.Value).Distinct().ToArray(), cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is NpgsqlException or ArgumentException or TimeoutException)
            {
                continue; // best effort: the oid and the database still say which table it is
            }

            foreach (var target in database)
            {
                if (names.TryGetValue(target.RelationId!.Value, out var name))
                {
                    target.Relation = name;
                }
            }
        }
    }

    private static async Task<Dictionary<uint, string>> ReadNamesAsync(string connectionString, string database, long[] oids, CancellationToken cancellationToken)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString) { Database = database, Pooling = false };
        var connection = new NpgsqlConnection(builder.ConnectionString);
        await using (connection.ConfigureAwait(false))
        {
            await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
            var command = new NpgsqlCommand(
                "SELECT c.oid::bigint, format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ANY($1::bigint[]::oid[])",
                connection)
            {
                Parameters = { new NpgsqlParameter<long[]> { TypedValue = oids } },
            };
            await using (command.ConfigureAwait(false))
            {
                var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    var names = new Dictionary<uint, string>();
                    while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    {
                        names[(uint)reader.GetInt64(0)] = reader.GetString(1);
                    }

                    return names;
                }
            }
        }
    }
}
