using System.ComponentModel;
using Npgsql;
using Spectre.Console;
using Spectre.Console.Cli;

namespace RowLock.Cli;

/// <summary>The connection option every database command takes.</summary>
internal class ConnectionSettings : CommandSettings
{
    public const string ConnectionVariable = "ROWLOCK_CONNECTION";

    [CommandOption("-c|--connection <CONNECTION_STRING>")]
    [Description("Npgsql connection string of the database to inspect (default: $ROWLOCK_CONNECTION). Quote it: it contains ';'. Any role works; other roles' queries need pg_read_all_stats.")]
    public string? Connection { get; init; }

    public string? ResolvedConnection => string.IsNullOrWhiteSpace(Connection) ? Environment.GetEnvironmentVariable(ConnectionVariable) : Connection;

    public override ValidationResult Validate() =>
        string.IsNullOrWhiteSpace(ResolvedConnection)
            ? ValidationResult.Error($"Give a connection string with --connection or ${ConnectionVariable}.")
            : ValidationResult.Success();

    /// <summary>A data source for the resolved connection string, with an application name that says who is looking.</summary>
    public NpgsqlDataSource CreateDataSource(string applicationName)
    {
        try
        {
            var builder = new NpgsqlConnectionStringBuilder(ResolvedConnection);
            if (string.IsNullOrEmpty(builder.ApplicationName))
            {
                builder.ApplicationName = applicationName;
            }

            return NpgsqlDataSource.Create(builder.ConnectionString);
        }
        catch (ArgumentException e)
        {
            throw new CliException("the connection string is not valid: " + e.Message);
        }
    }
}
