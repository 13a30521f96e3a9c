using System.Data;
using System.Data.Common;
using System.Diagnostics.CodeAnalysis;
using Dapper;
using Npgsql;

namespace RowLock.Internal;

/// <summary>
/// Turns SQL and Dapper parameters into <see cref="NpgsqlBatchCommand"/>s without sending anything, so a write can
/// travel in a batch with COMMIT and still get exactly Dapper's parameter handling (anonymous objects,
/// <see cref="DynamicParameters"/>, type handlers, <c>IN @list</c> expansion, one execution per element of a list of
/// parameter objects). Dapper "executes" against a connection that only records each command it is given.
/// </summary>
internal static class DapperBatchCommands
{
    public static void Record(List<NpgsqlBatchCommand> into, string sql, object? param)
    {
        using var connection = new RecordingConnection(into);
        connection.Execute(sql, param);
    }

    private sealed class RecordingConnection(List<NpgsqlBatchCommand> into) : DbConnection
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

        protected override DbCommand CreateDbCommand() => new RecordingCommand(into);
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
