using System.Collections;
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
/// Values are copied when recorded (arrays, lists, dictionaries, <see cref="BitArray"/>, byte memory, JSON nodes), so
/// changing the caller's object after the call changes nothing that is sent.
/// </summary>
internal static class DapperBatchCommands
{
    /// <summary>Records <paramref name="sql"/> with <paramref name="param"/>; with <paramref name="expectedRows"/>, the server checks the count (<see cref="RowCountCheck"/>).</summary>
    public static void Record(List<DeferredWrite> into, string sql, object? param, int? expectedRows, string paramName)
    {
        var text = expectedRows is { } expected ? RowCountCheck.Wrap(sql, expected, paramName) : sql;
        var commands = new List<NpgsqlBatchCommand>(1);
        using (var connection = new NpgsqlConnection(commands, paramName))
        {
            connection.Execute(text, param);
        }

        foreach (var command in commands)
        {
            into.Add(new DeferredWrite(command, sql, expectedRows));
        }
    }

    /// <summary>Records a statement that is not a final write (a locking SELECT): values copied, nothing refused.</summary>
    public static void Record(List<NpgsqlBatchCommand> into, string sql, object? param)
    {
        using var connection = new NpgsqlConnection(into, paramName: null);
        connection.Execute(sql, param);
    }

    /// <summary>A copy of a parameter value that the caller could still change, or the value itself when it cannot change.</summary>
    private static object? Snapshot(object? value) => value switch
    {
        null or string or DBNull => value,
        Array array => array.Clone(),
        BitArray bits => new BitArray(bits),
        ReadOnlyMemory<byte> memory => new ReadOnlyMemory<byte>(memory.ToArray()),
        Memory<byte> memory => new Memory<byte>(memory.ToArray()),
        ArraySegment<byte> segment => new ArraySegment<byte>([.. segment]),
        System.Text.Json.Nodes.JsonNode node => node.DeepClone(),
        ValueType => value,
        IEnumerable when value.GetType() is { IsGenericType: true } type && CopyableCollections.Contains(type.GetGenericTypeDefinition()) =>
            Activator.CreateInstance(type, value),
        _ => value,
    };

    /// <summary>Collections Npgsql writes (arrays, ranges, hstore) whose copy constructor takes the collection itself.</summary>
    private static readonly Type[] CopyableCollections = [typeof(List<>), typeof(Dictionary<,>), typeof(SortedDictionary<,>), typeof(HashSet<>)];

    /// <summary>
    /// The recording connection. Named NpgsqlConnection on purpose: Dapper chooses its array handling by the
    /// connection's type name, and for NpgsqlConnection it sends an array as one array parameter (<c>= ANY(@ids)</c>,
    /// an <c>int[]</c> value) instead of expanding it into <c>(@ids1, @ids2)</c>. A deferred write must get the
    /// parameters the same statement gets through Dapper on the transaction's own connection.
    /// </summary>
    private sealed class NpgsqlConnection(List<NpgsqlBatchCommand> into, string? paramName) : DbConnection
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
        protected override DbCommand CreateDbCommand() => new RecordingCommand(into, paramName) { Connection = this };
    }

    /// <summary>Records each execution; with a <c>paramName</c>, refuses what a final write cannot honour, naming that parameter.</summary>
    private sealed class RecordingCommand(List<NpgsqlBatchCommand> into, string? paramName) : DbCommand
    {
        private readonly NpgsqlParameterCollection _parameters = new NpgsqlBatchCommand().Parameters;

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

        /// <summary>Records the command as Dapper prepared it; the parameters are copied, as Dapper reuses them per element,
        /// and so are their values. Refuses what a write sent with COMMIT cannot honour.</summary>
        public override int ExecuteNonQuery()
        {
            if (paramName is not null && CommandType != CommandType.Text)
            {
                // Dapper takes SQL without whitespace for the name of a stored procedure (CommandType.StoredProcedure).
                throw new ArgumentException(
                    $"Dapper reads SQL without whitespace ('{CommandText}') as the name of a stored procedure. A write sent with COMMIT is SQL text: write the call out, e.g. CALL {CommandText}(@a).",
                    paramName);
            }

            var command = new NpgsqlBatchCommand(CommandText);
            foreach (NpgsqlParameter parameter in _parameters)
            {
                if (paramName is not null && parameter.Direction != ParameterDirection.Input)
                {
                    // Nothing reads a deferred write's results: an output value would silently stay null.
                    throw new ArgumentException(
                        $"The parameter '{parameter.ParameterName}' is an output parameter ({parameter.Direction}). A write sent with COMMIT returns nothing to the caller; " +
                        "run a write whose results you need on the transaction before the work returns.",
                        paramName);
                }

                var copy = parameter.Clone();
                copy.Value = Snapshot(copy.Value);
                command.Parameters.Add(copy);
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
