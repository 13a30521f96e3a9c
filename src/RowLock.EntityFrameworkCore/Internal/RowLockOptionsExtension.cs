using Microsoft.EntityFrameworkCore.Diagnostics;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Query;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Npgsql.EntityFrameworkCore.PostgreSQL.Infrastructure.Internal;

namespace RowLock.EntityFrameworkCore.Internal;

/// <summary>Plugs RowLock into a context's internal service provider, the way efcore.pg plugs itself in.</summary>
internal sealed class RowLockOptionsExtension : IDbContextOptionsExtension
{
    private DbContextOptionsExtensionInfo? _info;

    public DbContextOptionsExtensionInfo Info => _info ??= new ExtensionInfo(this);

    public void ApplyServices(IServiceCollection services)
    {
        services.Replace(ServiceDescriptor.Singleton<IQuerySqlGeneratorFactory, RowLockQuerySqlGeneratorFactory>());
        services.AddSingleton<IInterceptor>(RowLockQueryExpressionInterceptor.Instance);
        services.AddSingleton<LockedRowShapes>();
        services.AddSingleton<IInterceptor>(provider => new RowLockCommandInterceptor(provider.GetRequiredService<LockedRowShapes>()));
    }

    public void Validate(IDbContextOptions options)
    {
        if (options.FindExtension<NpgsqlOptionsExtension>() is null)
        {
            throw new InvalidOperationException(
                "UseRowLock() needs the PostgreSQL provider: call UseNpgsql(...) before UseRowLock() (RowLock.EntityFrameworkCore works with Npgsql.EntityFrameworkCore.PostgreSQL only).");
        }
    }

    private sealed class ExtensionInfo(IDbContextOptionsExtension extension) : DbContextOptionsExtensionInfo(extension)
    {
        public override bool IsDatabaseProvider => false;

        public override string LogFragment => "using RowLock ";

        public override int GetServiceProviderHashCode() => 0;

        public override bool ShouldUseSameServiceProvider(DbContextOptionsExtensionInfo other) => other is ExtensionInfo;

        public override void PopulateDebugInfo(IDictionary<string, string> debugInfo) => debugInfo["RowLock"] = "1";
    }
}
