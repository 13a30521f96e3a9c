using Npgsql;

namespace RowLock.Internal;

/// <summary>
/// The caller's unit of work in the shape it was given: work that returns a value, work that returns nothing, or (for
/// the EF Core package's runner) work on a transaction begun elsewhere. The attempt awaits the work's own task and reads
/// its result, so no adapter (a closure and a state machine per run) stands between the runner and the work.
/// </summary>
internal readonly struct UnitOfWork<T>
{
    private readonly Func<NpgsqlTransaction, CancellationToken, Task<T>>? _returning;
    private readonly Func<NpgsqlTransaction, CancellationToken, Task>? _void;
    private readonly Func<CancellationToken, Task<T>>? _onTransaction;

    public UnitOfWork(Func<NpgsqlTransaction, CancellationToken, Task<T>> work) => _returning = work;

    public UnitOfWork(Func<NpgsqlTransaction, CancellationToken, Task> work) => _void = work;

    public UnitOfWork(Func<CancellationToken, Task<T>> work) => _onTransaction = work;

    /// <summary>Starts the work; a work that returns no task fails as awaiting it would.</summary>
    public Task Start(NpgsqlTransaction transaction, CancellationToken cancellationToken)
    {
        Task? task = _returning is not null ? _returning(transaction, cancellationToken)
            : _void is not null ? _void(transaction, cancellationToken)
            : _onTransaction!(cancellationToken);
        return task ?? throw new InvalidOperationException("The unit of work returned null instead of a Task.");
    }

    /// <summary>What the completed <paramref name="task"/> returned; the default value for work that returns nothing.</summary>
    public T ResultOf(Task task) => _void is null ? ((Task<T>)task).GetAwaiter().GetResult() : default!;
}
