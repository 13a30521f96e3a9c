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

        public override ValidationResult Validate() =>
            string.IsNullOrEmpty(Name) ? ValidationResult.Error("The name cannot be empty.") : ValidationResult.Success();
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
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
}
