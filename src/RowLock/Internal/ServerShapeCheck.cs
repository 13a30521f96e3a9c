using Npgsql;

namespace RowLock.Internal;

/// <summary>
/// The relations a locking clause reaches in one SELECT, as quoted names, and the unqualified names the text took for
/// built-in set-returning functions (<see cref="Function"/> entries: <c>name()</c>, which no quoted name can equal);
/// compared by value.
/// </summary>
internal sealed class LockedRelations : IEquatable<LockedRelations>
{
    private const string FunctionSuffix = "()";

    /// <summary>The entry for an unqualified call the text took for the built-in set-returning function <paramref name="name"/>.</summary>
    public static string Function(string name) => name + FunctionSuffix;

    /// <summary>Is <paramref name="entry"/> a <see cref="Function"/> entry (a relation entry is a quoted name)?</summary>
    public static bool IsFunction(string entry) => entry.EndsWith(FunctionSuffix, StringComparison.Ordinal) && !entry.StartsWith('"');

    /// <summary>The function name of a <see cref="Function"/> entry.</summary>
    public static string FunctionName(string entry) => entry[..^FunctionSuffix.Length];

    private readonly int _hash;

    public LockedRelations(IReadOnlyList<string> names)
    {
        Names = [.. names];
        var hash = new HashCode();
        foreach (var name in Names)
        {
            hash.Add(name, StringComparer.Ordinal);
        }

        _hash = hash.ToHashCode();
    }

    public string[] Names { get; }

    public bool Equals(LockedRelations? other) =>
        other is not null && (ReferenceEquals(this, other) || (_hash == other._hash && Names.AsSpan().SequenceEqual(other.Names)));

    public override bool Equals(object? obj) => Equals(obj as LockedRelations);

    public override int GetHashCode() => _hash;
}

/// <summary>
/// What the text cannot show, asked of the server once: which of the relations a locking clause reaches are views, and
/// whether each view's definition (read with pg_get_viewdef, views inside views too) is a SELECT that the clause, pushed
/// down into it, locks whole. PostgreSQL silently skips functions, VALUES and WITH queries inside a view, and never locks
/// what a subquery in its select list reads; such a view, and a materialized view, foreign table or sequence, is refused
/// with an <see cref="ArgumentException"/> before the locking statement is sent.
/// </summary>
/// <remarks>
/// The verdict is cached per connection string (so per data source: host, database, user and search path as the
/// connection string gives them) and per list of relation names as the SQL spells them. The first call for a SQL text costs
/// one round trip more (one per level of views inside views); later calls none. The cache is bounded (past
/// <see cref="Capacity"/> entries it starts over) and lives as long as the process: a view redefined while the process runs
/// is not read again. A verdict that depends on a name the server could not resolve (a missing table, a schema set with
/// SET search_path) is not cached; a SET search_path or a temporary relation (pg_temp comes first) that makes a cached name
/// resolve to another relation later is not seen (documented in docs/sql-check.md: schema-qualify). The check runs inside a savepoint of its own, so a failure leaves the caller's
/// transaction as it was; in an aborted transaction it fails with 25P02, as the locking statement would.
/// </remarks>
internal static class ServerShapeCheck
{
    public const int Capacity = BoundedCache<Key, string?>.Capacity;

    /// <summary>Views inside views deeper than this are refused (PostgreSQL itself allows any depth; RowLock stops looking).</summary>
    private const int MaxDepth = 8;

    private const string UseOf = "RowLockClause.ForUpdate.Of(\"table\")";

    private const string Savepoint = "rowlock_shape_check";

    /// <summary>A function outside pg_catalog, visible on the search path, named like a built-in set-returning function
    /// the SQL calls unqualified: the call may reach it (an exact or better match for its arguments, or pg_catalog placed
    /// later on the search path), and what it reads RowLock cannot see.</summary>
    private const string ShadowLookup = """
        SELECT n.nspname || '.' || p.proname
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE p.proname = ANY(@functions::text[]) AND n.nspname <> 'pg_catalog' AND pg_catalog.pg_function_is_visible(p.oid)
        ORDER BY 1
        LIMIT 1
        """;

    private const string Lookup = """
        SELECT c.oid::bigint, c.relkind::text, CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END, n.name
        FROM unnest(@names::text[]) WITH ORDINALITY AS n(name, ord)
        LEFT JOIN pg_class c ON c.oid = to_regclass(n.name)
        ORDER BY n.ord
        """;

    private static readonly BoundedCache<Key, string?> Verdicts = new();

    /// <summary>How many verdicts the cache holds now (tests check the bound).</summary>
    public static int Count => Verdicts.Count;

    /// <summary>
    /// Completes at once when the verdict is cached (throwing the cached refusal); otherwise asks the server, caches the
    /// verdict and throws <see cref="ArgumentException"/> (named <paramref name="paramName"/>) for a shape that would not lock
    /// what it returns.
    /// </summary>
    public static ValueTask EnsureAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, LockedRelations relations, string paramName,
        CancellationToken cancellationToken)
    {
        var key = new Key(connection.ConnectionString, relations);
        if (Verdicts.TryGetValue(key, out var refusal))
        {
            return refusal is null ? default : throw new ArgumentException(refusal, paramName);
        }

        return new ValueTask(CheckAsync(connection, transaction, key, paramName, cancellationToken));
    }

    private static async Task CheckAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, Key key, string paramName,
        CancellationToken cancellationToken)
    {
        var (refusal, cacheable) = await AskAsync(connection, transaction, key.Relations.Names, cancellationToken).ConfigureAwait(false);
        if (cacheable)
        {
            Verdicts.Add(key, refusal);
        }

        if (refusal is not null)
        {
            throw new ArgumentException(refusal, paramName);
        }
    }

    /// <summary>Walks the relations (and the relations of every view among them); returns the refusal, or null, and whether it may be cached.</summary>
    private static async Task<(string? Refusal, bool Cacheable)> AskAsync(NpgsqlConnection connection, NpgsqlTransaction transaction,
        string[] names, CancellationToken cancellationToken)
    {
        var seen = new HashSet<long>();
        var cacheable = true;
        var pending = names;
        for (var depth = 0; pending.Length > 0; depth++)
        {
            if (depth > MaxDepth)
            {
                return ($"The SQL reads views nested more than {MaxDepth} deep; RowLock cannot check that a locking clause reaches every row they read. Select from the tables, or from a shallower view.", true);
            }

            var relations = pending.Where(n => !LockedRelations.IsFunction(n)).ToArray();
            var functions = pending.Where(LockedRelations.IsFunction).Select(LockedRelations.FunctionName).Distinct(StringComparer.Ordinal).ToArray();
            var (found, shadow) = await LookupAsync(connection, transaction, relations, functions, cancellationToken).ConfigureAwait(false);
            if (shadow is not null)
            {
                var called = shadow[(shadow.LastIndexOf('.') + 1)..];
                return ($"The SQL calls {called}() in FROM without a schema, and the database has a function {shadow} that the call may reach instead of the "
                    + $"built-in (checked on the server: it is on the search path). RowLock cannot see what that function reads, and a locking clause never locks "
                    + $"what a function returns. Write pg_catalog.{called}(...) to call the built-in, or name the tables whose rows to lock with {UseOf}.", true);
            }

            var next = new List<string>();
            foreach (var (oid, kind, definition, name) in found)
            {
                if (oid is null)
                {
                    cacheable = false; // PostgreSQL will say the relation does not exist; a later call looks again
                    continue;
                }

                if (!seen.Add(oid.Value))
                {
                    continue;
                }

                switch (kind)
                {
                    case "r":
                    case "p":
                        break;
                    case "v":
                        try
                        {
                            next.AddRange(SqlText.ValidateViewDefinition(definition ?? "", "view"));
                        }
                        catch (ArgumentException e)
                        {
                            return ($"The SQL reads the view {name}, whose rows a locking clause would not all lock (checked on the server: PostgreSQL pushes the clause "
                                + $"into the view's definition, with the same rules and the same silent skips). In the view: {e.Message.Split(" (Parameter '", 2)[0]} "
                                + "Lock the rows through the tables the view reads, or redefine the view as a plain SELECT over tables.", true);
                        }

                        break;
                    case "m":
                        return ($"The SQL reads the materialized view {name}: PostgreSQL cannot lock its rows (they are a stored copy). Lock the rows of the tables it was built from.", true);
                    case "f":
                        return ($"The SQL reads the foreign table {name}: whether its rows are locked depends on the foreign data wrapper, which RowLock cannot check. Lock the rows on the server that holds them.", true);
                    default:
                        return ($"The SQL reads {name}, which is not a table or a view (relkind '{kind}'): it has no rows a locking clause can lock. Select from a table.", true);
                }
            }

            pending = [.. next];
        }

        return (null, cacheable);
    }

    /// <summary>One round trip: what each relation is (and a view's definition), and, when <paramref name="functions"/> has
    /// names, the first function outside pg_catalog visible under one of them (<see cref="ShadowLookup"/>), or null.</summary>
    private static async Task<(List<(long? Oid, string? Kind, string? Definition, string Name)> Rows, string? Shadow)> LookupAsync(NpgsqlConnection connection,
        NpgsqlTransaction transaction, string[] names, string[] functions, CancellationToken cancellationToken)
    {
        var batch = new NpgsqlBatch(connection, transaction)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand($"SAVEPOINT {Savepoint}"),
                new NpgsqlBatchCommand(Lookup) { Parameters = { new NpgsqlParameter("names", names) } },
            },
        };
        if (functions.Length > 0)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand(ShadowLookup) { Parameters = { new NpgsqlParameter("functions", functions) } });
        }

        batch.BatchCommands.Add(new NpgsqlBatchCommand($"RELEASE SAVEPOINT {Savepoint}"));
        await using (batch.ConfigureAwait(false))
        {
            try
            {
                var rows = new List<(long?, string?, string?, string)>(names.Length);
                var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    {
                        rows.Add((reader.IsDBNull(0) ? null : reader.GetInt64(0), reader.IsDBNull(1) ? null : reader.GetString(1),
                            reader.IsDBNull(2) ? null : reader.GetString(2), reader.GetString(3)));
                    }

                    string? shadow = null;
                    if (functions.Length > 0 && await reader.NextResultAsync(cancellationToken).ConfigureAwait(false)
                        && await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    {
                        shadow = reader.GetString(0);
                    }

                    while (await reader.NextResultAsync(cancellationToken).ConfigureAwait(false))
                    {
                    }

                    return (rows, shadow);
                }
            }
            catch (PostgresException)
            {
                await SavepointRollback.RollBackQuietlyAsync(connection, transaction, Savepoint).ConfigureAwait(false);
                throw;
            }
        }
    }


    private readonly record struct Key(string ConnectionString, LockedRelations Relations);
}
