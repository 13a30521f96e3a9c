namespace RowLock.Tests;

public sealed class AdvisoryLockKeyTests
{
    [Theory]
    [InlineData("spp_api_v2.fastapi_endpoint_sync", 3827055375235039567L)]
    [InlineData("a", -3848465438864589366L)]
    public void Names_hash_to_the_published_vectors(string name, long expected)
    {
        Assert.Equal(expected, AdvisoryLockKey.FromName(name).Value);
    }

    [Fact]
    public void The_pg_locks_coordinates_of_a_named_key_are_its_two_halves()
    {
        var key = AdvisoryLockKey.FromName("spp_api_v2.fastapi_endpoint_sync");
        Assert.Equal((891055766u, 1352810831u, 1), key.PgLocksCoordinates);
        Assert.Equal("locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND classid = 891055766 AND objid = 1352810831 AND objsubid = 1", key.PgLocksPredicate);
        Assert.Equal((uint.MaxValue, uint.MaxValue, 2), AdvisoryLockKey.FromInt32Pair(-1, -1).PgLocksCoordinates);
    }

    [Fact]
    public void Keys_are_equal_by_what_they_lock_not_by_name()
    {
        var named = AdvisoryLockKey.FromName("a");
        Assert.Equal(AdvisoryLockKey.FromInt64(-3848465438864589366L), named);
        Assert.Equal(AdvisoryLockKey.FromInt64(-3848465438864589366L).GetHashCode(), named.GetHashCode());
        Assert.NotEqual(AdvisoryLockKey.FromInt64((1L << 32) | 2), AdvisoryLockKey.FromInt32Pair(1, 2));
        Assert.Equal(AdvisoryLockKey.FromInt32Pair(1, 2), AdvisoryLockKey.FromInt32Pair(1, 2));
    }

    [Fact]
    public void Keys_print_readably()
    {
        Assert.Equal("\"a\" (-3848465438864589366)", AdvisoryLockKey.FromName("a").ToString());
        Assert.Equal("42", AdvisoryLockKey.FromInt64(42).ToString());
        Assert.Equal("(1, -2)", AdvisoryLockKey.FromInt32Pair(1, -2).ToString());
    }

    [Fact]
    public void Each_key_space_refuses_the_other_spaces_accessors()
    {
        Assert.Throws<InvalidOperationException>(() => AdvisoryLockKey.FromInt32Pair(1, 2).Value);
        Assert.Throws<InvalidOperationException>(() => AdvisoryLockKey.FromInt64(1).Key1);
        Assert.Equal((-7, 9), (AdvisoryLockKey.FromInt32Pair(-7, 9).Key1, AdvisoryLockKey.FromInt32Pair(-7, 9).Key2));
    }

    [Fact]
    public void Null_or_empty_names_are_argument_errors()
    {
        Assert.Throws<ArgumentNullException>(() => AdvisoryLockKey.FromName(null!));
        var error = Assert.Throws<ArgumentException>(() => AdvisoryLockKey.FromName(""));
        Assert.Equal("name", error.ParamName);
    }

    [Fact]
    public void Names_with_lone_surrogates_are_refused_because_no_other_language_can_hash_them()
    {
        // Built from chars: a lone surrogate is not valid UTF-16, and test runners may mangle it in theory data.
        string[] names =
        [
            "lone high " + '\uD800' + " in the middle",
            "lone low " + '\uDC00' + " in the middle",
            "ends with a high " + '\uD83D',
            '\uDE42' + " starts with a low",
            "swapped " + '\uDE42' + '\uD83D' + " pair",
        ];
        foreach (var name in names)
        {
            var error = Assert.Throws<ArgumentException>(() => AdvisoryLockKey.FromName(name));
            Assert.Equal("name", error.ParamName);
        }
    }

    [Fact]
    public void Names_with_valid_surrogate_pairs_hash_their_utf8()
    {
        Assert.Equal(AdvisoryLockKey.FromName("\U0001F642").Value, AdvisoryLockKey.FromName("\uD83D\uDE42").Value);
        Assert.NotEqual(AdvisoryLockKey.FromName("\uFFFD").Value, AdvisoryLockKey.FromName("\uD83D\uDE42").Value);
    }
}
