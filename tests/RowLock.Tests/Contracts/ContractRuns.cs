using RowLock.Tests.Infrastructure;

namespace RowLock.Tests.Contracts;

// Where each contract runs: one concrete class per family and endpoint. A new endpoint (the EF Core package's runner,
// a failover pair's primary) is one more line per family that fits it.

/// <summary>The row-lock contract on Npgsql's own pool.</summary>
public sealed class RowLocksOnDirectConnections(DirectEndpoint endpoint) : RowLockContract<DirectEndpoint>(endpoint);

/// <summary>The row-lock contract through PgBouncer in transaction pooling mode (4 server connections shared by all clients).</summary>
public sealed class RowLocksThroughPgBouncer(PgBouncerEndpoint endpoint) : RowLockContract<PgBouncerEndpoint>(endpoint);

/// <summary>The transaction-scoped advisory-lock contract on Npgsql's own pool.</summary>
public sealed class AdvisoryLocksOnDirectConnections(DirectEndpoint endpoint) : AdvisoryLockContract<DirectEndpoint>(endpoint);

/// <summary>The transaction-scoped advisory-lock contract through PgBouncer in transaction pooling mode.</summary>
public sealed class AdvisoryLocksThroughPgBouncer(PgBouncerEndpoint endpoint) : AdvisoryLockContract<PgBouncerEndpoint>(endpoint);

/// <summary>The runner contract on Npgsql's own pool.</summary>
public sealed class TransactionRunnerOnDirectConnections(DirectEndpoint endpoint) : TransactionRunnerContract<DirectEndpoint>(endpoint);

/// <summary>The runner contract through PgBouncer in transaction pooling mode (each attempt may get another server connection).</summary>
public sealed class TransactionRunnerThroughPgBouncer(PgBouncerEndpoint endpoint) : TransactionRunnerContract<PgBouncerEndpoint>(endpoint);
