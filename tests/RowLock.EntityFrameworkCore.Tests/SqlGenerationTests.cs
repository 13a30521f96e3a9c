using Microsoft.EntityFrameworkCore;
using RowLock.EntityFrameworkCore.Tests.Infrastructure;

namespace RowLock.EntityFrameworkCore.Tests;

/// <summary>The exact SQL EF generates for each clause (as EF's own tests check with AssertSql).</summary>
public sealed class SqlGenerationTests(EfFixture ef) : IClassFixture<EfFixture>
{
    private static void AssertSql(string expected, IQueryable query) =>
        Assert.Equal(expected.ReplaceLineEndings("\n").Trim(), query.ToQueryString().ReplaceLineEndings("\n").Trim());

    private const string ById = """
        -- @id='7'
        -- RowLock: {0}
        SELECT o."Id", o."Customer", o."Total"
        FROM orders AS o
        WHERE o."Id" = @id
        {0}
        """;

    [Theory]
    [InlineData(LockStrength.Update, "FOR UPDATE")]
    [InlineData(LockStrength.NoKeyUpdate, "FOR NO KEY UPDATE")]
    [InlineData(LockStrength.Share, "FOR SHARE")]
    [InlineData(LockStrength.KeyShare, "FOR KEY SHARE")]
    public void Every_strength_is_appended_to_the_generated_select(LockStrength strength, string sql)
    {
        using var db = ef.CreateContext();
        var id = 7L;
        var clause = strength switch
        {
            LockStrength.Update => RowLockClause.ForUpdate,
            LockStrength.NoKeyUpdate => RowLockClause.ForNoKeyUpdate,
            LockStrength.Share => RowLockClause.ForShare,
            _ => RowLockClause.ForKeyShare,
        };
        AssertSql(string.Format(ById, sql), db.Orders.Where(o => o.Id == id).WithRowLock(clause));
    }

    [Fact]
    public void Skip_locked_is_a_plain_clause()
    {
        using var db = ef.CreateContext();
        var id = 7L;
        AssertSql(string.Format(ById, "FOR UPDATE SKIP LOCKED"), db.Orders.Where(o => o.Id == id).WithRowLock(RowLockClause.ForUpdate.SkipLocked()));
    }

    [Fact]
    public void NoWait_runs_the_select_inside_a_savepoint()
    {
        using var db = ef.CreateContext();
        var id = 7L;
        AssertSql("""
            -- @id='7'
            -- RowLock: FOR NO KEY UPDATE NOWAIT
            SAVEPOINT rowlock_lock;
            SELECT o."Id", o."Customer", o."Total"
            FROM orders AS o
            WHERE o."Id" = @id
            FOR NO KEY UPDATE NOWAIT;
            RELEASE SAVEPOINT rowlock_lock
            """, db.Orders.Where(o => o.Id == id).WithRowLock(RowLockClause.ForNoKeyUpdate.NoWait()));
    }

    [Fact]
    public void A_timeout_saves_sets_and_restores_lock_timeout_around_the_select_in_a_savepoint()
    {
        using var db = ef.CreateContext();
        var id = 7L;
        AssertSql("""
            -- @id='7'
            -- RowLock: FOR SHARE (lock_timeout 251ms)
            SAVEPOINT rowlock_lock;
            DO $rowlock$BEGIN PERFORM set_config('rowlock.saved_lock_timeout', current_setting('lock_timeout'), true); PERFORM set_config('lock_timeout', '251', true); END$rowlock$;
            SELECT o."Id", o."Customer", o."Total"
            FROM orders AS o
            WHERE o."Id" = @id
            FOR SHARE;
            DO $rowlock$BEGIN PERFORM set_config('lock_timeout', current_setting('rowlock.saved_lock_timeout'), true); END$rowlock$;
            RELEASE SAVEPOINT rowlock_lock
            """, db.Orders.Where(o => o.Id == id).WithRowLock(RowLockClause.ForShare.WithTimeout(TimeSpan.FromMilliseconds(250.2))));
    }

    [Theory]
    [InlineData("orders")]
    [InlineData("Order")]
    [InlineData("o")]
    public void Of_maps_a_table_an_entity_type_or_an_alias_to_the_alias_EF_generated(string name)
    {
        using var db = ef.CreateContext();
        AssertSql("""
            -- RowLock: FOR UPDATE OF o
            SELECT o."Id", o."Customer", o."Total", o0."Id", o0."OrderId", o0."Qty"
            FROM orders AS o
            LEFT JOIN order_lines AS o0 ON o."Id" = o0."OrderId"
            ORDER BY o."Id"
            FOR UPDATE OF o
            """, db.Orders.Include(o => o.Lines).WithRowLock(RowLockClause.ForUpdate.Of(name)));
    }

    [Fact]
    public void Include_without_Of_locks_the_query_entity_not_the_nullable_side()
    {
        using var db = ef.CreateContext();
        AssertSql("""
            -- RowLock: FOR UPDATE OF o
            SELECT o."Id", o."Customer", o."Total", o0."Id", o0."OrderId", o0."Qty"
            FROM orders AS o
            LEFT JOIN order_lines AS o0 ON o."Id" = o0."OrderId"
            ORDER BY o."Id"
            FOR UPDATE OF o
            """, db.Orders.Include(o => o.Lines).WithRowLock(RowLockClause.ForUpdate));
    }

    [Fact]
    public void Where_OrderBy_Skip_Take_with_Include_lock_the_paged_sub_query()
    {
        using var db = ef.CreateContext();
        AssertSql("""
            -- @p1='2'
            -- @p='1'
            -- RowLock: FOR UPDATE OF o1 NOWAIT
            SAVEPOINT rowlock_lock;
            SELECT o1."Id", o1."Customer", o1."Total", o0."Id", o0."OrderId", o0."Qty"
            FROM (
                SELECT o."Id", o."Customer", o."Total"
                FROM orders AS o
                WHERE o."Total" > 0
                ORDER BY o."Id"
                LIMIT @p1 OFFSET @p
            ) AS o1
            LEFT JOIN order_lines AS o0 ON o1."Id" = o0."OrderId"
            ORDER BY o1."Id"
            FOR UPDATE OF o1 NOWAIT;
            RELEASE SAVEPOINT rowlock_lock
            """, db.Orders.Include(o => o.Lines).Where(o => o.Total > 0).OrderBy(o => o.Id).Skip(1).Take(2).WithRowLock(RowLockClause.ForUpdate.NoWait()));
    }

    [Fact]
    public void The_clause_applies_wherever_WithRowLock_is_written_and_user_tags_stay()
    {
        using var db = ef.CreateContext();
        AssertSql("""
            -- @p='5'
            -- RowLock: FOR UPDATE SKIP LOCKED
            -- oldest first

            SELECT o."Id", o."Customer", o."Total"
            FROM orders AS o
            WHERE o."Total" > 0
            ORDER BY o."Id"
            LIMIT @p
            FOR UPDATE SKIP LOCKED
            """, db.Orders.WithRowLock(RowLockClause.ForUpdate.SkipLocked()).TagWith("oldest first").Where(o => o.Total > 0).OrderBy(o => o.Id).Take(5));
    }

    [Fact]
    public void Names_in_Of_never_reach_the_sql_unquoted_and_unknown_names_are_refused()
    {
        using var db = ef.CreateContext();
        var e = Assert.Throws<InvalidOperationException>(() => db.Orders.WithRowLock(RowLockClause.ForUpdate.Of("orders\nDROP TABLE orders")).ToQueryString());
        Assert.Contains("names no table", e.Message, StringComparison.Ordinal);
    }
}
