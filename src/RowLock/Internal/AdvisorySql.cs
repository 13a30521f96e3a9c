using Npgsql;
using NpgsqlTypes;

namespace RowLock.Internal;

/// <summary>Builds advisory-lock function calls with the key as parameters ($1 or $1, $2).</summary>
internal static class AdvisorySql
{
    public static NpgsqlBatchCommand Call(string function, AdvisoryLockKey key)
    {
        var command = new NpgsqlBatchCommand();
        Bind(command.Parameters, key);
        command.CommandText = key.IsInt32Pair ? $"SELECT {function}($1, $2)" : $"SELECT {function}($1)";
        return command;
    }

    public static NpgsqlCommand Command(string function, AdvisoryLockKey key, NpgsqlConnection connection, NpgsqlTransaction? transaction)
    {
        var command = new NpgsqlCommand(key.IsInt32Pair ? $"SELECT {function}($1, $2)" : $"SELECT {function}($1)", connection, transaction);
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

    public static string TryXact(AdvisoryLockMode mode) => mode == AdvisoryLockMode.Shared ? "pg_try_advisory_xact_lock_shared" : "pg_try_advisory_xact_lock";

    public static string WaitXact(AdvisoryLockMode mode) => mode == AdvisoryLockMode.Shared ? "pg_advisory_xact_lock_shared" : "pg_advisory_xact_lock";

    public static string TrySession(AdvisoryLockMode mode) => mode == AdvisoryLockMode.Shared ? "pg_try_advisory_lock_shared" : "pg_try_advisory_lock";

    public static string WaitSession(AdvisoryLockMode mode) => mode == AdvisoryLockMode.Shared ? "pg_advisory_lock_shared" : "pg_advisory_lock";

    public static string Unlock(AdvisoryLockMode mode) => mode == AdvisoryLockMode.Shared ? "pg_advisory_unlock_shared" : "pg_advisory_unlock";

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
