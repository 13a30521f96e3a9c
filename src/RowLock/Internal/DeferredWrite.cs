using Npgsql;

namespace RowLock.Internal;

/// <summary>One statement of the commit batch ahead of COMMIT: a deferred write (or the write of <c>ExecuteAndCommitAsync</c>)
/// as it will be sent, the caller's SQL, and the rows it must affect when the caller said so.</summary>
internal readonly record struct DeferredWrite(NpgsqlBatchCommand Command, string Sql, int? ExpectedRows);
