using System.Globalization;
using System.Text;
using Npgsql;
using Spectre.Console.Cli;

namespace RowLock.Cli;

/// <summary>
/// <c>rowlock cancel PID</c> (pg_cancel_backend) and <c>rowlock terminate PID</c> (pg_terminate_backend), guarded: the pid
/// must be a root blocker in a snapshot taken just now (unless <c>--force</c>), the tool shows what the session does and
/// holds and what the signal will do, asks unless <c>--yes</c>, then reports what changed.
/// </summary>
internal abstract class SignalCommand : AsyncCommand<SignalSettings>
{
    protected abstract bool Terminate { get; }

    private string Verb => Terminate ? "terminate" : "cancel";

    public override async Task<int> ExecuteAsync(CommandContext context, SignalSettings settings, CancellationToken cancellationToken)
    {
        var dataSource = settings.CreateDataSource("rowlock " + Verb);
        await using (dataSource.ConfigureAwait(false))
        {
            try
            {
                return (int)await RunAsync(dataSource, settings, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException)
            {
                throw new CliException($"could not {Verb} pid {settings.Pid}: {e.Message}");
            }
        }
    }

    private async Task<ExitCode> RunAsync(NpgsqlDataSource dataSource, SignalSettings settings, CancellationToken cancellationToken)
    {
        var pid = settings.Pid;
        var before = await dataSource.GetLockWaitSnapshotAsync(new LockWaitSnapshotOptions { LongestTransactionCount = 0 }, cancellationToken).ConfigureAwait(false);
        var session = before.Session(pid);
        var output = new StringBuilder();
        if (session is null || !session.IsRoot)
        {
            var why = session switch
            {
                null => string.Create(CultureInfo.InvariantCulture, $"pid {pid} blocks no one in {before.Database} now"),
                { IsWaiting: true } => string.Create(CultureInfo.InvariantCulture, $"pid {pid} is not a root blocker: it waits itself ({session.WaitingFor}), behind root pid {session.RootBlocker}"),
                _ => string.Create(CultureInfo.InvariantCulture, $"pid {pid} is not a root blocker"),
            };
            if (!settings.Force)
            {
                await Console.Error.WriteLineAsync($"rowlock: refused: {why}. Nothing was done. Run `rowlock locks` to see the roots, or add --force.").ConfigureAwait(false);
                return ExitCode.WaitsFoundOrNothingDone;
            }

            output.Append("Warning: ").Append(why).Append("; going on because of --force.\n");
        }

        if (session is not null)
        {
            output.Append(CultureInfo.InvariantCulture, $"pid {pid}: {Describe(session)}\n");
        }

        output.Append("Holds: ").Append(await HeldLocksAsync(dataSource, pid, cancellationToken).ConfigureAwait(false)).Append('\n');
        output.Append("Will: ").Append(Consequence(session)).Append('\n');
        await Console.Out.WriteAsync(output.ToString()).ConfigureAwait(false);

        if (!settings.Yes && !await ConfirmAsync(pid).ConfigureAwait(false))
        {
            await Console.Error.WriteLineAsync("rowlock: not confirmed; nothing was done.").ConfigureAwait(false);
            return ExitCode.WaitsFoundOrNothingDone;
        }

        bool signalled;
        var command = dataSource.CreateCommand(Terminate ? "SELECT pg_terminate_backend($1)" : "SELECT pg_cancel_backend($1)");
        await using (command.ConfigureAwait(false))
        {
            command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = pid });
            signalled = await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is true;
        }

        if (!signalled)
        {
            await Console.Error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"rowlock: the server did not signal pid {pid} (it has ended, or this role may not signal it).")).ConfigureAwait(false);
            return ExitCode.WaitsFoundOrNothingDone;
        }

        var after = await AfterAsync(dataSource, pid, cancellationToken).ConfigureAwait(false);
        var still = after.Session(pid);
        var outcome = Terminate
            ? still is null || !still.IsKnown ? "terminated" : "signalled to terminate (still exiting)"
            : "sent a cancel request";
        await Console.Out.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
            $"Done: pid {pid} {outcome}. Waiting before: {before.Waiting.Count}; waiting now: {after.Waiting.Count}{(still is { HoldsUp: > 0 } ? $" (pid {pid} still holds up {still.HoldsUp})" : "")}.")).ConfigureAwait(false);
        return ExitCode.Ok;
    }

    private static string Describe(LockSession session)
    {
        var who = session.ApplicationName is { Length: > 0 } app ? "(" + app + ") " : "";
        var text = who + (session.UserName is null ? "" : "user " + session.UserName + ", ");
        text += session.IsWaiting ? "waits for " + session.WaitingFor : session.State ?? "state hidden";
        if (session.IsIdleInTransaction && session.StateDuration is { } idle)
        {
            text += string.Create(CultureInfo.InvariantCulture, $" for {idle.TotalSeconds:0} s");
        }

        if (session.TransactionAge is { } age)
        {
            text += string.Create(CultureInfo.InvariantCulture, $", transaction open {age.TotalSeconds:0} s");
        }

        text += string.Create(CultureInfo.InvariantCulture, $", holds up {session.HoldsUp}");
        return session.Query is { Length: > 0 } query ? text + ", query: " + query.ReplaceLineEndings(" ") : text;
    }

    private string Consequence(LockSession? session)
    {
        if (Terminate)
        {
            return "pg_terminate_backend ends the session: its open transaction is rolled back, its locks are released, its client gets a connection error.";
        }

        var text = "pg_cancel_backend cancels the statement it is running; the client gets 57014 and its transaction is aborted (locks stay until it rolls back).";
        if (session is { IsIdleInTransaction: true })
        {
            text += " It is idle in transaction, so there is no statement to cancel and its locks stay: use `rowlock terminate` to free them.";
        }

        return text;
    }

    private static async Task<bool> ConfirmAsync(int pid)
    {
        await Console.Out.WriteAsync(string.Create(CultureInfo.InvariantCulture, $"Type yes to go on with pid {pid}: ")).ConfigureAwait(false);
        await Console.Out.FlushAsync().ConfigureAwait(false);
        var answer = await Console.In.ReadLineAsync().ConfigureAwait(false);
        return string.Equals(answer?.Trim(), "yes", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>The granted locks of <paramref name="pid"/>, counted by kind and object: <c>2 row locks on public.accounts, ...</c>.</summary>
    private static async Task<string> HeldLocksAsync(NpgsqlDataSource dataSource, int pid, CancellationToken cancellationToken)
    {
        var command = dataSource.CreateCommand("""
            SELECT l.locktype, l.mode, CASE WHEN l.relation IS NOT NULL THEN coalesce((SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = l.relation), l.relation::text) END, count(*)::int
            FROM pg_locks l
            WHERE l.pid = $1 AND l.granted AND l.locktype NOT IN ('virtualxid')
            GROUP BY 1, 2, 3 ORDER BY 1, 3, 2
            """);
        await using (command.ConfigureAwait(false))
        {
            command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = pid });
            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                var parts = new List<string>();
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    var what = reader.GetString(0) + (reader.IsDBNull(2) ? "" : " " + reader.GetString(2));
                    parts.Add(string.Create(CultureInfo.InvariantCulture, $"{what} [{reader.GetString(1)}]{(reader.GetInt32(3) > 1 ? " x" + reader.GetInt32(3) : "")}"));
                }

                return parts.Count == 0 ? "no locks (or it ended)" : string.Join(", ", parts);
            }
        }
    }

    /// <summary>A snapshot once the signal has had its effect: a terminated backend leaves pg_stat_activity within a moment.</summary>
    private async Task<LockWaitSnapshot> AfterAsync(NpgsqlDataSource dataSource, int pid, CancellationToken cancellationToken)
    {
        var options = new LockWaitSnapshotOptions { LongestTransactionCount = 0 };
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (true)
        {
            var snapshot = await dataSource.GetLockWaitSnapshotAsync(options, cancellationToken).ConfigureAwait(false);
            if (!Terminate || snapshot.Session(pid) is null || DateTime.UtcNow > deadline)
            {
                return snapshot;
            }

            await Task.Delay(100, cancellationToken).ConfigureAwait(false);
        }
    }
}

/// <summary><c>rowlock cancel PID</c>.</summary>
internal sealed class CancelCommand : SignalCommand
{
    protected override bool Terminate => false;
}

/// <summary><c>rowlock terminate PID</c>.</summary>
internal sealed class TerminateCommand : SignalCommand
{
    protected override bool Terminate => true;
}
