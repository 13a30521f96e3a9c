using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using RowLock.EntityFrameworkCore.Internal;

namespace RowLock.EntityFrameworkCore;

/// <summary>Turns on RowLock for an EF Core context on PostgreSQL.</summary>
public static class RowLockDbContextOptionsBuilderExtensions
{
    /// <summary>
    /// Registers RowLock with the context: <see cref="RowLockQueryableExtensions.WithRowLock{T}"/> becomes a locking clause in
    /// the SQL EF generates, and locking queries get the core's NOWAIT / timeout semantics. Call it after <c>UseNpgsql(...)</c>;
    /// calling it again changes nothing.
    /// </summary>
    /// <param name="optionsBuilder">The options builder, already configured with <c>UseNpgsql(...)</c>.</param>
    /// <returns>The same builder.</returns>
    /// <exception cref="InvalidOperationException">When the context is first used: the provider is not Npgsql.EntityFrameworkCore.PostgreSQL.</exception>
    public static DbContextOptionsBuilder UseRowLock(this DbContextOptionsBuilder optionsBuilder)
    {
        ArgumentNullException.ThrowIfNull(optionsBuilder);
        var builder = (IDbContextOptionsBuilderInfrastructure)optionsBuilder;
        if (optionsBuilder.Options.FindExtension<RowLockOptionsExtension>() is null)
        {
            builder.AddOrUpdateExtension(new RowLockOptionsExtension());
        }

        return optionsBuilder;
    }

    /// <summary>Registers RowLock with the context (see <see cref="UseRowLock(DbContextOptionsBuilder)"/>), keeping the builder typed.</summary>
    /// <typeparam name="TContext">The context type.</typeparam>
    /// <param name="optionsBuilder">The options builder, already configured with <c>UseNpgsql(...)</c>.</param>
    /// <returns>The same builder.</returns>
    public static DbContextOptionsBuilder<TContext> UseRowLock<TContext>(this DbContextOptionsBuilder<TContext> optionsBuilder)
        where TContext : DbContext =>
        (DbContextOptionsBuilder<TContext>)UseRowLock((DbContextOptionsBuilder)optionsBuilder);
}
