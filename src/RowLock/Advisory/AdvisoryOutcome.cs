using Npgsql;

namespace RowLock.Internal;

/// <summary>Whether an advisory lock was granted and, when a timeout refused it, the server's error.</summary>
internal readonly record struct AdvisoryOutcome(bool Acquired, PostgresException? Refusal);
