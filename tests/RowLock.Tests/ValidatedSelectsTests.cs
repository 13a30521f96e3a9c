using RowLock.Internal;

namespace RowLock.Tests;

/// <summary>The cache of validated SELECTs never lets through what validation would refuse, and never grows without bound.</summary>
public sealed class ValidatedSelectsTests
{
    [Fact]
    public void A_select_that_passed_with_an_of_list_is_still_refused_without_one()
    {
        var sql = $"WITH x AS (SELECT 1 AS one) SELECT t.* FROM t, x /* {Guid.NewGuid()} */";
        var locking = ValidatedSelects.Validate(sql, "selectSql", RowLockClause.ForUpdate.Of("t"), claim: false).LockingSql;
        Assert.Equal(sql + "\nFOR UPDATE OF \"t\"", locking);

        var error = Assert.Throws<ArgumentException>(() => ValidatedSelects.Validate(sql, "selectSql", RowLockClause.ForUpdate, claim: false));
        Assert.Contains("WITH", error.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => ValidatedSelects.Validate(sql, "selectSql", RowLockClause.ForUpdate.Of("x"), claim: false));
    }

    [Fact]
    public void A_select_that_passed_as_a_lock_is_still_refused_as_a_claim_or_with_skip_locked()
    {
        var sql = $"SELECT id FROM jobs ORDER BY id FETCH FIRST 5 ROWS WITH TIES /* {Guid.NewGuid()} */";
        ValidatedSelects.Validate(sql, "selectSql", RowLockClause.ForUpdate, claim: false);

        Assert.Throws<ArgumentException>(() => ValidatedSelects.Validate(sql, "selectSql", RowLockClause.ForUpdate.SkipLocked(), claim: false));
        Assert.Throws<ArgumentException>(() => ValidatedSelects.Validate(sql, "selectSql", RowLockClause.ForUpdate.SkipLocked(), claim: true));
    }

    [Fact]
    public void Refused_sql_is_refused_on_every_call_with_the_callers_parameter_name()
    {
        const string sql = "SELECT 1; DELETE FROM t";
        Assert.Equal("first", Assert.Throws<ArgumentException>(() => ValidatedSelects.Validate(sql, "first", RowLockClause.ForUpdate, claim: false)).ParamName);
        Assert.Equal("second", Assert.Throws<ArgumentException>(() => ValidatedSelects.Validate(sql, "second", RowLockClause.ForUpdate, claim: false)).ParamName);
        Assert.Throws<ArgumentNullException>(() => ValidatedSelects.Validate(null!, "selectSql", RowLockClause.ForUpdate, claim: false));
    }

    [Fact]
    public void The_locking_sql_follows_the_strength_the_wait_policy_and_the_order_of_the_of_list()
    {
        var sql = $"SELECT * FROM a JOIN b ON a.id = b.id /* {Guid.NewGuid()} */";
        Assert.Equal(sql + "\nFOR UPDATE", ValidatedSelects.Validate(sql, "selectSql", RowLockClause.ForUpdate, claim: false).LockingSql);
        Assert.Equal(sql + "\nFOR SHARE NOWAIT", ValidatedSelects.Validate(sql, "selectSql", RowLockClause.ForShare.NoWait(), claim: false).LockingSql);
        Assert.Equal(sql + "\nFOR UPDATE SKIP LOCKED", ValidatedSelects.Validate(sql, "selectSql", RowLockClause.ForUpdate.SkipLocked(), claim: false).LockingSql);
        Assert.Equal(sql + "\nFOR UPDATE", ValidatedSelects.Validate(sql, "selectSql", RowLockClause.ForUpdate.WithTimeout(TimeSpan.FromSeconds(1)), claim: false).LockingSql);
        Assert.Equal(sql + "\nFOR UPDATE OF \"a\", \"b\"", ValidatedSelects.Validate(sql, "selectSql", RowLockClause.ForUpdate.Of("a", "b"), claim: false).LockingSql);
        Assert.Equal(sql + "\nFOR UPDATE OF \"b\", \"a\"", ValidatedSelects.Validate(sql, "selectSql", RowLockClause.ForUpdate.Of("b", "a"), claim: false).LockingSql);
        Assert.Equal(sql, ValidatedSelects.Validate(sql, "selectSql", RowLockClause.ForUpdate.SkipLocked(), claim: true).LockingSql);
    }

    [Fact]
    public void Many_more_distinct_selects_than_the_capacity_are_all_validated()
    {
        var prefix = Guid.NewGuid().ToString("N");
        for (var i = 0; i < ValidatedSelects.Capacity * 3; i++)
        {
            var sql = $"SELECT * FROM t WHERE id = {i} /* {prefix} */";
            Assert.Equal(sql + "\nFOR UPDATE", ValidatedSelects.Validate(sql, "selectSql", RowLockClause.ForUpdate, claim: false).LockingSql);
        }

        // Other tests may add entries concurrently, hence the slack; without the bound the cache would hold 3 x Capacity.
        Assert.InRange(ValidatedSelects.Count, 0, ValidatedSelects.Capacity * 2);

        Assert.Throws<ArgumentException>(() => ValidatedSelects.Validate($"SELECT DISTINCT id FROM t /* {prefix} */", "selectSql", RowLockClause.ForUpdate, claim: false));
    }
}
