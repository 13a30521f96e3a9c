using System.ComponentModel;
using System.Globalization;
using Spectre.Console;
using Spectre.Console.Cli;

namespace RowLock.Cli;

/// <summary><c>rowlock key NAME</c>: what <see cref="AdvisoryLockKey.FromName"/> makes of a name, and how to find it in pg_locks.</summary>
internal sealed class KeyCommand : AsyncCommand<KeyCommand.Settings>
{
    internal sealed class Settings : CommandSettings
    {
        [CommandArgument(0, "<NAME>")]
        [Description("The advisory lock name, exactly as the application passes it to AdvisoryLockKey.FromName.")]
        public string Name { get; init; } = "";

        [CommandOption("--semaphore <COUNT>")]
        [Description("Treat NAME as a semaphore with COUNT slots: print its class id and slot keys instead of the 64-bit key.")]
        public int? Semaphore { get; init; }

        public override ValidationResult Validate() =>
            string.IsNullOrEmpty(Name) ? ValidationResult.Error("The name cannot be empty.")
            : Semaphore is < 1 or > SemaphoreKey.MaxCount ? ValidationResult.Error($"--semaphore takes a count between 1 and {SemaphoreKey.MaxCount}.")
            : ValidationResult.Success();
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        if (settings.Semaphore is { } count)
        {
            await Console.Out.WriteAsync(SemaphoreText(settings.Name, count)).ConfigureAwait(false);
            return 0;
        }

        var key = AdvisoryLockKey.FromName(settings.Name);
        var (classId, objId, objSubId) = key.PgLocksCoordinates;
        var text = string.Create(CultureInfo.InvariantCulture, $"""
            name:     {settings.Name}
            key:      {key.Value}
            pg_locks: classid = {classId}, objid = {objId}, objsubid = {objSubId}
            sql:      {AdvisoryKeyNames.SqlExpression(settings.Name)}
            find it:  SELECT pid, mode, granted, waitstart FROM pg_locks WHERE {key.PgLocksPredicate};

            """);
        await Console.Out.WriteAsync(text.ReplaceLineEndings("\n")).ConfigureAwait(false);
        return 0;
    }

    /// <summary>A semaphore's class id, its slot and turnstile keys, and how to see them in pg_locks.</summary>
    internal static string SemaphoreText(string name, int count)
    {
        var semaphore = SemaphoreKey.FromName(name);
        var literal = "'" + name.Replace("'", "''", StringComparison.Ordinal) + "'";
        var text = new System.Text.StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"""
            name:      {name}
            semaphore: {count} slots, class id {semaphore.ClassId} (pg_locks classid = {(uint)semaphore.ClassId}, objsubid = 2)
            sql:       ('x' || encode(substring(sha256(convert_to({literal}, 'UTF8')) from 1 for 4), 'hex'))::bit(32)::int
            turnstile: ({semaphore.ClassId}, -1)  pg_locks objid = {uint.MaxValue}  (held by the head of the queue, waited for by the rest)

            """);
        foreach (var slot in semaphore.SlotKeys(count))
        {
            text.Append(CultureInfo.InvariantCulture, $"slot {slot.Key2,-5}   ({slot.Key1}, {slot.Key2})  pg_locks objid = {slot.PgLocksCoordinates.ObjId}\n");
        }

        text.Append(CultureInfo.InvariantCulture,
            $"find it:   SELECT pid, objid AS slot, mode, granted FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND classid = {(uint)semaphore.ClassId} AND database = (SELECT oid FROM pg_database WHERE datname = current_database());\n");
        return text.ToString().ReplaceLineEndings("\n");
    }
}
