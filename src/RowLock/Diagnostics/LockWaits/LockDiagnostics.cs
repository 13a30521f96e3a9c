using Npgsql;
using RowLock.Diagnostics.LockWaits;
using RowLock.Internal;

namespace RowLock;

/// <summary>
/// Lock diagnostics for incidents: who waits, on what, behind whom, for how long (see <see cref="LockWaitSnapshot"/>),
/// and the optional SQL function that lets an operator find a named advisory lock in <c>pg_locks</c> from psql.
/// </summary>
public static class LockDiagnostics
{
    /// <summary>The name of the function <see cref="InstallAdvisoryKeyFunctionAsync"/> creates.</summary>
    public const string AdvisoryKeyFunctionName = "rowlock_advisory_key";

    /// <summary>
    /// Takes a lock-wait snapshot of the data source's database in one round trip on one pooled connection.
    /// Takes no locks beyond the lock manager's brief internal ones (pg_blocking_pids is called only for waiting sessions).
    /// With <see cref="LockWaitSnapshotOptions.AllDatabases"/>, a table of another database has no name in this database's
    /// catalog: its name is then read with one short connection to that database (same connection string, other
    /// <c>Database</c>); when that fails (e.g. the password is not kept in the data source's connection string), the table
    /// shows as <c>relation 16384 in database shop</c>.
    /// </summary>
    /// <remarks>
    /// Works for any role. Without superuser or membership in <c>pg_read_all_stats</c>, other roles' sessions show
    /// their pid, role, application name, what they wait for, whom they wait on and since when, but not their query,
    /// state, client or transaction age (see <see cref="LockSession.IsDetailHidden"/>). Wait durations need PostgreSQL 14 or later.
    /// </remarks>
    /// <exception cref="ArgumentNullException"><paramref name="dataSource"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    /// <exception cref="NpgsqlException">The server could not be reached or the query failed.</exception>
    public static async Task<LockWaitSnapshot> GetLockWaitSnapshotAsync(
        this NpgsqlDataSource dataSource,
        LockWaitSnapshotOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        options ??= new LockWaitSnapshotOptions();
        Validate(options);
        LockWaitSnapshot snapshot;
        var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using (connection.ConfigureAwait(false))
        {
            snapshot = await ReadAsync(connection, options, cancellationToken).ConfigureAwait(false);
        }

        if (options.AllDatabases)
        {
            await OtherDatabaseNames.ResolveAsync(dataSource.ConnectionString, snapshot, cancellationToken).ConfigureAwait(false);
        }

        return snapshot;
    }

    /// <summary>
    /// The semaphores in use now, each as one thing: its name (when registered), count, the sessions holding a slot and the
    /// sessions queued for one (the first of them holds the queue's turnstile and is next). Reports every semaphore
    /// registered in <paramref name="names"/> (<see cref="AdvisoryKeyNames.AddSemaphore(string, int)"/>), and any other
    /// class id whose turnstile <c>(classId, -1)</c> is locked, i.e. which has a queue (its count is then unknown).
    /// One query on <c>pg_locks</c> of the data source's database.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="dataSource"/> is null.</exception>
    /// <exception cref="NpgsqlException">The server could not be reached or the query failed.</exception>
    public static async Task<IReadOnlyList<SemaphoreUsage>> GetSemaphoresAsync(this NpgsqlDataSource dataSource, AdvisoryKeyNames? names = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        var registered = (names?.Semaphores ?? []).ToDictionary(s => s.ClassId, s => (s.Name, s.MaxCount));
        var command = dataSource.CreateCommand(
            "SELECT classid::bigint, objid::bigint, pid, granted FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 " +
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) " +
            "AND (classid = ANY($1::bigint[]::oid[]) OR classid IN (SELECT classid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND objid = 4294967295::oid)) " +
            "ORDER BY classid, granted DESC, pid");
        await using (command.ConfigureAwait(false))
        {
            command.Parameters.Add(new NpgsqlParameter<long[]> { TypedValue = registered.Keys.Select(c => (long)(uint)c).ToArray() });
            var seen = new Dictionary<int, (List<int> Holders, List<int> Waiters)>();
            foreach (var classId in registered.Keys)
            {
                seen[classId] = ([], []);
            }

            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    var classId = (int)(uint)reader.GetInt64(0);
                    var turnstile = reader.GetInt64(1) == uint.MaxValue;
                    if (!seen.TryGetValue(classId, out var lists))
                    {
                        seen[classId] = lists = ([], []);
                    }

                    (turnstile ? lists.Waiters : reader.GetBoolean(3) ? lists.Holders : lists.Waiters).Add(reader.GetInt32(2));
                }
            }

            return seen.OrderBy(s => s.Key).Select(s => registered.TryGetValue(s.Key, out var r)
                ? new SemaphoreUsage(SemaphoreKey.FromClassId(s.Key), r.Name, r.MaxCount, s.Value.Holders, s.Value.Waiters)
                : new SemaphoreUsage(SemaphoreKey.FromClassId(s.Key), null, null, s.Value.Holders, s.Value.Waiters)).ToArray();
        }
    }

    /// <summary>Takes a lock-wait snapshot on an open connection you own (one round trip; see the data source overload).</summary>
    /// <exception cref="ArgumentNullException"><paramref name="connection"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    /// <exception cref="InvalidOperationException">The connection is not open.</exception>
    /// <exception cref="NpgsqlException">The query failed.</exception>
    public static Task<LockWaitSnapshot> GetLockWaitSnapshotAsync(
        this NpgsqlConnection connection,
        LockWaitSnapshotOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(connection);
        options ??= new LockWaitSnapshotOptions();
        Validate(options);
        if (connection.State != System.Data.ConnectionState.Open)
        {
            throw new InvalidOperationException("The connection must be open to take a lock-wait snapshot.");
        }

        return ReadAsync(connection, options, cancellationToken);
    }

    /// <summary>
    /// Creates (or replaces) <c>schema.rowlock_advisory_key(name text) RETURNS bigint</c>, computing
    /// <see cref="AdvisoryLockKey.FromName"/> inside PostgreSQL, so an operator can find a named lock in psql:
    /// <c>SELECT * FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND (classid::bigint &lt;&lt; 32 | objid::bigint) = rowlock_advisory_key('jobs.sync')
    /// AND database = (SELECT oid FROM pg_database WHERE datname = current_database())</c> (advisory locks are per database; pg_locks shows every database's).
    /// Installed only when you call this; needs CREATE on the schema. The function is IMMUTABLE, STRICT and PARALLEL SAFE.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="dataSource"/> or <paramref name="schema"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="schema"/> is not a valid identifier.</exception>
    /// <exception cref="Npgsql.PostgresException">The role may not create functions in the schema, or the schema does not exist.</exception>
    public static async Task InstallAdvisoryKeyFunctionAsync(
        this NpgsqlDataSource dataSource,
        string schema = "public",
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        var quotedSchema = Identifier.Quote(schema, nameof(schema));
        var sql = $"""
            CREATE OR REPLACE FUNCTION {quotedSchema}.{AdvisoryKeyFunctionName}(name text) RETURNS bigint
            LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
            AS $rowlock$ SELECT ('x' || encode(substring(sha256(convert_to(name, 'UTF8')) from 1 for 8), 'hex'))::bit(64)::bigint $rowlock$;
            COMMENT ON FUNCTION {quotedSchema}.{AdvisoryKeyFunctionName}(text) IS
                'RowLock: the advisory lock key of a name (first 8 bytes of SHA-256 of its UTF-8 bytes, big-endian). In pg_locks: classid = key >> 32, objid = key & 4294967295, objsubid = 1.';
            """;
        var command = dataSource.CreateCommand(sql);
        await using (command.ConfigureAwait(false))
        {
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private static void Validate(LockWaitSnapshotOptions options)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxQueryLength, 1, nameof(options.MaxQueryLength));
        ArgumentOutOfRangeException.ThrowIfNegative(options.LongestTransactionCount, nameof(options.LongestTransactionCount));
    }

    private static async Task<LockWaitSnapshot> ReadAsync(NpgsqlConnection connection, LockWaitSnapshotOptions options, CancellationToken cancellationToken)
    {
        var command = new NpgsqlCommand(LockWaitSql.Build(connection.PostgreSqlVersion.Major), connection)
        {
            Parameters =
            {
                new NpgsqlParameter<bool> { TypedValue = options.AllDatabases },
                new NpgsqlParameter<int> { TypedValue = options.MaxQueryLength },
                new NpgsqlParameter<int> { TypedValue = options.LongestTransactionCount },
            },
        };
        await using (command.ConfigureAwait(false))
        {
            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                return await LockWaitReader.ReadAsync(reader, options.AdvisoryKeyNames, cancellationToken).ConfigureAwait(false);
            }
        }
    }
}
