using System.Data;
using System.Data.Common;
using System.Diagnostics.CodeAnalysis;
using Dapper;
using Npgsql;

namespace RowLock.Internal;

/// <summary>
/// Turns SQL and Dapper parameters into <see cref="NpgsqlBatchCommand"/>s without sending anything, so a write can
/// travel in a batch with COMMIT and still get exactly Dapper's parameter handling (anonymous objects,
/// <see cref="DynamicParameters"/>, type handlers, array parameters, one execution per element of a list of
/// parameter objects). Dapper "executes" against a connection that only records each command it is given.
/// As on an NpgsqlConnection, arrays are sent as array parameters: <c>IN @list</c> is not expanded (use <c>= ANY(@list)</c>).
/// </summary>
internal static class DapperBatchCommands
{
    public static void Record(List<NpgsqlBatchCommand> into, string sql, object? param)
    {
        using var connection = new NpgsqlConnection(into);
        connection.Execute(sql, param);
    }

    /// <summary>
    /// The recording connection. Named NpgsqlConnection on purpose: Dapper chooses its array handling by the
    /// connection's type name, and for NpgsqlConnection it sends an array as one array parameter (<c>= ANY(@ids)</c>,
    /// an <c>int[]</c> value) instead of expanding it into <c>(@ids1, @ids2)</c>. A deferred write must get the
    /// parameters the same statement gets through Dapper on the transaction's own connection.
    /// </summary>
    private sealed class NpgsqlConnection(List<NpgsqlBatchCommand> into) : DbConnection
    {
        [AllowNull]
        public override string ConnectionString { get; set; } = "RowLock deferred writes";

        public override string Database => string.Empty;

        public override string DataSource => string.Empty;

        public override string ServerVersion => string.Empty;

        public override ConnectionState State => ConnectionState.Open;

        public override void ChangeDatabase(string databaseName) => throw new NotSupportedException();

        public override void Close()
        {
        }

        public override void Open()
        {
        }

        protected override DbTransaction BeginDbTransaction(IsolationLevel isolationLevel) => throw new NotSupportedException();

        // Dapper asks the command's connection, as a provider's CreateCommand sets it.
        protected override DbCommand CreateDbCommand() => new RecordingCommand(into) { Connection = this };
    }

    private sealed class RecordingCommand(List<NpgsqlBatchCommand> into) : DbCommand
    {
        private readonly NpgsqlParameterCollection _parameters = new NpgsqlCommand().Parameters;

        [AllowNull]
        public override string CommandText { get; set; } = string.Empty;

        public override int CommandTimeout { get; set; }

        public override CommandType CommandType { get; set; } = CommandType.Text;

        public override bool DesignTimeVisible { get; set; }

        public override UpdateRowSource UpdatedRowSource { get; set; }

        protected override DbConnection? DbConnection { get; set; }

        protected override DbParameterCollection DbParameterCollection => _parameters;

        protected override DbTransaction? DbTransaction { get; set; }

        public override void Cancel()
        {
        }

        /// <summary>Records the command as Dapper prepared it; the parameters are copied, as Dapper reuses them per element.</summary>
        public override int ExecuteNonQuery()
        {
            var command = new NpgsqlBatchCommand(CommandText);
            foreach (NpgsqlParameter parameter in _parameters)
            {
                command.Parameters.Add(parameter.Clone());
            }

            into.Add(command);
            return 0;
        }

        public override object? ExecuteScalar() => throw new NotSupportedException();

        public override void Prepare()
        {
        }

        protected override DbParameter CreateDbParameter() => new NpgsqlParameter();

        protected override DbDataReader ExecuteDbDataReader(CommandBehavior behavior) => throw new NotSupportedException();
    }
}
