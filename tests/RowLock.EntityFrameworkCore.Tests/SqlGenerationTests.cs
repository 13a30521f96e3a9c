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

    private const string SplitNote = "\n\nThis LINQ query is being executed in split-query mode, and the SQL shown is for the first query to be executed. " +
        "Additional queries may also be executed depending on the results of the first query.";

    [Theory]
    [InlineData("orders")]
    [InlineData("Order")]
    [InlineData("o")]
    public void Of_maps_a_table_an_entity_type_or_an_alias_to_the_alias_EF_generated(string name)
    {
        using var db = ef.CreateContext();
        AssertSql("""
            -- RowLock: FOR UPDATE OF o
            SELECT o."Id", o."Customer", o."Total"
            FROM orders AS o
            ORDER BY o."Id"
            FOR UPDATE OF o
            """ + SplitNote, db.Orders.Include(o => o.Lines).WithRowLock(RowLockClause.ForUpdate.Of(name)));
    }

    [Fact]
    public void Include_of_a_collection_becomes_a_split_query_so_each_statement_locks_its_own_rows()
    {
        // A single query's LEFT JOIN cannot lock the lines, and after a lock wait PostgreSQL returns them from the snapshot
        // taken before the wait: RowLock makes the query a split query (the first statement is shown; the second locks the lines).
        using var db = ef.CreateContext();
        AssertSql("""
            -- RowLock: FOR UPDATE
            SELECT o."Id", o."Customer", o."Total"
            FROM orders AS o
            ORDER BY o."Id"
            FOR UPDATE
            """ + SplitNote, db.Orders.Include(o => o.Lines).WithRowLock(RowLockClause.ForUpdate));
    }

    [Fact]
    public void Include_of_a_collection_with_AsSingleQuery_is_refused_with_what_to_write_instead()
    {
        using var db = ef.CreateContext();
        var e = Assert.Throws<InvalidOperationException>(() => db.Orders.Include(o => o.Lines).AsSingleQuery().WithRowLock(RowLockClause.ForUpdate).ToQueryString());
        Assert.Contains("AsSplitQuery()", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Where_OrderBy_Skip_Take_with_Include_lock_the_paged_rows()
    {
        using var db = ef.CreateContext();
        AssertSql("""
            -- @p1='2'
            -- @p='1'
            -- RowLock: FOR UPDATE NOWAIT
            SAVEPOINT rowlock_lock;
            SELECT o."Id", o."Customer", o."Total"
            FROM orders AS o
            WHERE o."Total" > 0
            ORDER BY o."Id"
            LIMIT @p1 OFFSET @p
            FOR UPDATE NOWAIT;
            RELEASE SAVEPOINT rowlock_lock
            """ + SplitNote, db.Orders.Include(o => o.Lines).Where(o => o.Total > 0).OrderBy(o => o.Id).Skip(1).Take(2).WithRowLock(RowLockClause.ForUpdate.NoWait()));
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
