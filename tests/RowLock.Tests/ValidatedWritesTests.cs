using RowLock.Internal;

namespace RowLock.Tests;

/// <summary>The cache of final-write SQL that passed the check: a hit skips the lexer, refusals are never cached, and it is bounded.</summary>
public sealed class ValidatedWritesTests
{
    [Fact]
    public void Refused_sql_is_refused_on_every_call_with_the_callers_parameter_name()
    {
        foreach (var sql in new[] { "UPDATE t SET v = 1; DELETE FROM t", "COMMIT", "copy t from stdin", "  " })
        {
            Assert.Equal("first", Assert.Throws<ArgumentException>(() => ValidatedWrites.Validate(sql, "first")).ParamName);
            Assert.Equal("second", Assert.Throws<ArgumentException>(() => ValidatedWrites.Validate(sql, "second")).ParamName);
        }

        Assert.Throws<ArgumentNullException>(() => ValidatedWrites.Validate(null!, "sql"));
    }

    [Fact]
    public void A_write_that_passed_is_not_confused_with_one_that_differs_only_in_case_or_a_trailing_statement()
    {
        var tag = Guid.NewGuid().ToString("N");
        ValidatedWrites.Validate($"UPDATE t SET v = 1 /* {tag} */", "sql");
        Assert.Throws<ArgumentException>(() => ValidatedWrites.Validate($"UPDATE t SET v = 1 /* {tag} */; DROP TABLE t", "sql"));
        ValidatedWrites.Validate($"update t set v = 1 /* {tag} */", "sql");
        Assert.Throws<ArgumentException>(() => ValidatedWrites.Validate($"ROLLBACK /* {tag} */", "sql"));
    }

    [Fact]
    public void Many_more_distinct_writes_than_the_capacity_are_all_validated()
    {
        var prefix = Guid.NewGuid().ToString("N");
        for (var i = 0; i < ValidatedWrites.Capacity * 3; i++)
        {
            ValidatedWrites.Validate($"UPDATE t SET v = {i} /* {prefix} */", "sql");
        }

        // Other tests may add entries concurrently, hence the slack; without the bound the cache would hold 3 x Capacity.
        Assert.InRange(ValidatedWrites.Count, 0, ValidatedWrites.Capacity * 2);
        Assert.Throws<ArgumentException>(() => ValidatedWrites.Validate($"UPDATE t SET v = 0 /* {prefix} */; SELECT 1", "sql"));
    }
}
