namespace RowLock.Tests;

public sealed class RowLockClauseTests
{
    [Fact]
    public void Every_strength_and_wait_policy_renders_the_exact_postgres_clause()
    {
        Assert.Equal("FOR UPDATE", RowLockClause.ForUpdate.ToSql());
        Assert.Equal("FOR NO KEY UPDATE", RowLockClause.ForNoKeyUpdate.ToSql());
        Assert.Equal("FOR SHARE", RowLockClause.ForShare.ToSql());
        Assert.Equal("FOR KEY SHARE", RowLockClause.ForKeyShare.ToSql());
        Assert.Equal("FOR UPDATE NOWAIT", RowLockClause.ForUpdate.NoWait().ToSql());
        Assert.Equal("FOR SHARE SKIP LOCKED", RowLockClause.ForShare.SkipLocked().ToSql());
        Assert.Equal("FOR UPDATE OF \"orders\", \"Lines\" NOWAIT", RowLockClause.ForUpdate.Of("orders", "Lines").NoWait().ToSql());
        Assert.Equal("FOR NO KEY UPDATE", RowLockClause.ForNoKeyUpdate.WithTimeout(TimeSpan.FromMilliseconds(200)).ToSql());
        Assert.Equal("FOR NO KEY UPDATE (lock_timeout 200ms)", RowLockClause.ForNoKeyUpdate.WithTimeout(TimeSpan.FromMilliseconds(200)).ToString());
    }

    [Fact]
    public void The_default_clause_is_for_update_waiting()
    {
        Assert.Equal(RowLockClause.ForUpdate, default);
        Assert.Equal("FOR UPDATE", default(RowLockClause).ToSql());
    }

    [Fact]
    public void The_last_wait_policy_wins_and_timeouts_round_up_to_a_millisecond()
    {
        var clause = RowLockClause.ForUpdate.NoWait().SkipLocked();
        Assert.Equal(LockWaitPolicy.SkipLocked, clause.WaitPolicy);
        var timed = clause.WithTimeout(TimeSpan.FromTicks(1));
        Assert.Equal(LockWaitPolicy.Timeout, timed.WaitPolicy);
        Assert.Equal("FOR UPDATE (lock_timeout 1ms)", timed.ToString());
        Assert.Null(timed.NoWait().Timeout);
    }

    [Fact]
    public void Clauses_with_the_same_tables_are_equal()
    {
        Assert.Equal(RowLockClause.ForShare.Of("a", "b"), RowLockClause.ForShare.Of("a").Of("b"));
        Assert.Equal(RowLockClause.ForShare.Of("a", "b").GetHashCode(), RowLockClause.ForShare.Of("a").Of("b").GetHashCode());
        Assert.NotEqual(RowLockClause.ForShare.Of("a"), RowLockClause.ForShare.Of("A"));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-5)]
    public void Zero_or_negative_timeouts_are_rejected(int milliseconds)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => RowLockClause.ForUpdate.WithTimeout(TimeSpan.FromMilliseconds(milliseconds)));
        Assert.Equal("timeout", error.ParamName);
        Assert.StartsWith("The lock timeout must be positive.", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_infinite_or_huge_timeout_is_rejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => RowLockClause.ForUpdate.WithTimeout(Timeout.InfiniteTimeSpan));
        Assert.Throws<ArgumentOutOfRangeException>(() => RowLockClause.ForUpdate.WithTimeout(TimeSpan.FromDays(30)));
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    [InlineData("a\0b")]
    [InlineData("a_name_that_is_much_longer_than_the_sixty_three_bytes_postgres_keeps")]
    public void Bad_table_names_in_of_are_rejected(string table)
    {
        Assert.Throws<ArgumentException>(() => RowLockClause.ForUpdate.Of(table));
    }

    [Fact]
    public void Of_needs_a_table()
    {
        Assert.Throws<ArgumentException>(() => RowLockClause.ForUpdate.Of());
        Assert.Throws<ArgumentNullException>(() => RowLockClause.ForUpdate.Of(null!));
    }

    [Fact]
    public void Hostile_table_names_are_quoted_not_spliced()
    {
        Assert.Equal("FOR UPDATE OF \"x\"\"; DROP TABLE t; --\"", RowLockClause.ForUpdate.Of("x\"; DROP TABLE t; --").ToSql());
    }
}
