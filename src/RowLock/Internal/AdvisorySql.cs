using Npgsql;
using NpgsqlTypes;

namespace RowLock.Internal;

/// <summary>Builds advisory-lock function calls with the key as parameters ($1 or $1, $2).</summary>
internal static class AdvisorySql
{
    /// <summary>One advisory-lock function, with its two calls written once (not formatted again for every lock).</summary>
    public sealed class Function(string name)
    {
        public string Name { get; } = name;

        public string OneKey { get; } = $"SELECT {name}($1)";

        public string TwoKeys { get; } = $"SELECT {name}($1, $2)";

        public string For(AdvisoryLockKey key) => key.IsInt32Pair ? TwoKeys : OneKey;
    }

    private static readonly Function TryXactExclusive = new("pg_try_advisory_xact_lock");
    private static readonly Function TryXactShared = new("pg_try_advisory_xact_lock_shared");
    private static readonly Function WaitXactExclusive = new("pg_advisory_xact_lock");
    private static readonly Function WaitXactShared = new("pg_advisory_xact_lock_shared");
    private static readonly Function TrySessionExclusive = new("pg_try_advisory_lock");
    private static readonly Function TrySessionShared = new("pg_try_advisory_lock_shared");
    private static readonly Function WaitSessionExclusive = new("pg_advisory_lock");
    private static readonly Function WaitSessionShared = new("pg_advisory_lock_shared");
    private static readonly Function UnlockExclusive = new("pg_advisory_unlock");
    private static readonly Function UnlockShared = new("pg_advisory_unlock_shared");

    public static NpgsqlBatchCommand Call(Function function, AdvisoryLockKey key)
    {
        var command = new NpgsqlBatchCommand(function.For(key));
        Bind(command.Parameters, key);
        return command;
    }

    public static NpgsqlCommand Command(Function function, AdvisoryLockKey key, NpgsqlConnection connection, NpgsqlTransaction? transaction)
    {
        var command = new NpgsqlCommand(function.For(key), connection, transaction);
        Bind(command.Parameters, key);
        return command;
    }

    /// <summary>Is this backend holding the lock right now (granted, in this mode)?</summary>
    public static NpgsqlBatchCommand IsHeld(AdvisoryLockKey key, AdvisoryLockMode mode)
    {
        var (classId, objId, objSubId) = key.PgLocksCoordinates;
        var command = new NpgsqlBatchCommand(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted " +
            "AND classid = $1::bigint::oid AND objid = $2::bigint::oid AND objsubid = $3 AND mode = $4)");
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = classId });
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = objId });
        command.Parameters.Add(new NpgsqlParameter<short> { TypedValue = (short)objSubId });
        command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = mode == AdvisoryLockMode.Shared ? "ShareLock" : "ExclusiveLock", NpgsqlDbType = NpgsqlDbType.Text });
        return command;
    }

    public static Function TryXact(AdvisoryLockMode mode) => mode == AdvisoryLockMode.Shared ? TryXactShared : TryXactExclusive;

    public static Function WaitXact(AdvisoryLockMode mode) => mode == AdvisoryLockMode.Shared ? WaitXactShared : WaitXactExclusive;

    public static Function TrySession(AdvisoryLockMode mode) => mode == AdvisoryLockMode.Shared ? TrySessionShared : TrySessionExclusive;

    public static Function WaitSession(AdvisoryLockMode mode) => mode == AdvisoryLockMode.Shared ? WaitSessionShared : WaitSessionExclusive;

    public static Function Unlock(AdvisoryLockMode mode) => mode == AdvisoryLockMode.Shared ? UnlockShared : UnlockExclusive;

    public static void ValidateMode(AdvisoryLockMode mode)
    {
        if (mode is not (AdvisoryLockMode.Exclusive or AdvisoryLockMode.Shared))
        {
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "Use AdvisoryLockMode.Exclusive or AdvisoryLockMode.Shared.");
        }
    }

    private static void Bind(NpgsqlParameterCollection parameters, AdvisoryLockKey key)
    {
        if (key.IsInt32Pair)
        {
            parameters.Add(new NpgsqlParameter<int> { TypedValue = key.Key1 });
            parameters.Add(new NpgsqlParameter<int> { TypedValue = key.Key2 });
        }
        else
        {
            parameters.Add(new NpgsqlParameter<long> { TypedValue = key.Value });
        }
    }
}
