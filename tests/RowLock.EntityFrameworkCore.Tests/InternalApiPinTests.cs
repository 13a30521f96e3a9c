using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.EntityFrameworkCore.Query;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql.EntityFrameworkCore.PostgreSQL.Infrastructure.Internal;
using Npgsql.EntityFrameworkCore.PostgreSQL.Query.Internal;
using RowLock.EntityFrameworkCore.Tests.Infrastructure;

namespace RowLock.EntityFrameworkCore.Tests;

/// <summary>
/// RowLock.EntityFrameworkCore derives from efcore.pg internals (the query SQL generator and its factory's settings).
/// These tests fail loudly when an upgrade moves them: re-check the generator before changing the pinned versions.
/// </summary>
public sealed class InternalApiPinTests(EfFixture ef) : IClassFixture<EfFixture>
{
    [Fact]
    public void The_pinned_efcore_pg_and_EF_Core_major_versions_are_the_ones_loaded()
    {
        Assert.Equal(10, typeof(NpgsqlQuerySqlGenerator).Assembly.GetName().Version!.Major);
        Assert.Equal(10, typeof(QuerySqlGenerator).Assembly.GetName().Version!.Major);
        Assert.Equal(10, typeof(DbContext).Assembly.GetName().Version!.Major);
    }

    [Fact]
    public void The_generator_constructor_and_the_overridden_members_still_exist()
    {
        Assert.NotNull(typeof(NpgsqlQuerySqlGenerator).GetConstructor([typeof(QuerySqlGeneratorDependencies), typeof(IRelationalTypeMappingSource), typeof(bool), typeof(Version)]));
        var flags = System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.NonPublic;
        Assert.NotNull(typeof(NpgsqlQuerySqlGenerator).GetMethod("GenerateRootCommand", flags, [typeof(System.Linq.Expressions.Expression)]));
        Assert.NotNull(typeof(QuerySqlGenerator).GetMethod("GenerateTagsHeaderComment", flags, [typeof(ISet<string>)]));
        Assert.NotNull(typeof(INpgsqlSingletonOptions).GetProperty(nameof(INpgsqlSingletonOptions.PostgresVersion)));
    }

    [Fact]
    public void The_EF_internals_the_locking_checks_read_still_exist()
    {
        var flags = System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Public;

        // The generator records each locking command's row shape (GetCommand) and writes table splitting's self-join as INNER JOIN.
        Assert.True(typeof(QuerySqlGenerator).GetMethod("GetCommand", flags, [typeof(System.Linq.Expressions.Expression)])!.IsVirtual);
        Assert.NotNull(typeof(QuerySqlGenerator).GetMethod("VisitLeftJoin", flags, [typeof(Microsoft.EntityFrameworkCore.Query.SqlExpressions.LeftJoinExpression)]));

        // Tracked entries are found by key (TrackedRowRefresher), and a context that tracks nothing is skipped.
        var stateManager = typeof(Microsoft.EntityFrameworkCore.ChangeTracking.Internal.IStateManager);
        Assert.NotNull(stateManager.GetMethod("TryGetEntry", [typeof(Microsoft.EntityFrameworkCore.Metadata.IKey), typeof(object[])]));
        Assert.NotNull(stateManager.GetProperty("Count"));
    }

    [Fact]
    public void UseRowLock_replaces_efcore_pgs_generator_factory_and_the_generator_derives_from_efcore_pgs()
    {
        using var db = ef.CreateContext();
        var factory = db.GetService<IQuerySqlGeneratorFactory>();
        Assert.Equal("RowLockQuerySqlGeneratorFactory", factory.GetType().Name);
        Assert.IsAssignableFrom<NpgsqlQuerySqlGenerator>(factory.Create());
    }

    [Fact]
    public void UseRowLock_without_UseNpgsql_says_what_is_missing()
    {
        var options = new DbContextOptionsBuilder().UseRowLock().Options;
        var e = Assert.Throws<InvalidOperationException>(() =>
        {
            using var db = new DbContext(options);
            return db.Model;
        });
        Assert.Contains("UseNpgsql", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_generic_UseRowLock_keeps_the_builder_typed_and_calling_it_twice_changes_nothing()
    {
        DbContextOptions<ShopContext> options = new DbContextOptionsBuilder<ShopContext>().UseNpgsql("Host=127.0.0.1").UseRowLock().UseRowLock().Options;
        Assert.Single(options.Extensions, e => e.GetType().Name == "RowLockOptionsExtension");
    }
}
