using RowLock.Internal;

namespace RowLock.Tests;

public sealed class SqlTextTests
{
    [Theory]
    [InlineData("SELECT * FROM t WHERE id = @id")]
    [InlineData("select * from t -- a comment; with a semicolon\n")]
    [InlineData("SELECT ';' AS s, \"odd;name\" FROM t /* ; FOR UPDATE */")]
    [InlineData("SELECT $$;$$, $tag$ FOR UPDATE $tag$ FROM t WHERE id = $1")]
    [InlineData("SELECT E'it\\'s; FOR UPDATE' FROM t")]
    [InlineData("SELECT substring(name for 3) FROM t")]
    [InlineData("SELECT * FROM t /* nested /* ; */ still comment */")]
    public void Valid_selects_pass(string sql) => SqlText.ValidateSelect(sql, "sql", RowLockClause.ForUpdate, claim: false);

    [Theory]
    [InlineData("", "The SQL is empty.")]
    [InlineData("  \n ", "The SQL is empty.")]
    [InlineData("-- only a comment", "The SQL holds no statement")]
    [InlineData("SELECT 1;", "Remove the trailing ';'")]
    [InlineData("SELECT 1; -- done", "Remove the trailing ';'")]
    [InlineData("SELECT 1; DELETE FROM t", "The SQL holds several statements.")]
    [InlineData("SELECT * FROM t FOR UPDATE", "The SQL already has a locking clause")]
    [InlineData("SELECT * FROM t for no key update", "The SQL already has a locking clause")]
    [InlineData("SELECT * FROM t FOR SHARE", "The SQL already has a locking clause")]
    [InlineData("SELECT * FROM t FOR KEY SHARE", "The SQL already has a locking clause")]
    [InlineData("DELETE FROM t", "The SQL must be a SELECT")]
    [InlineData("WITH x AS (SELECT id FROM t FOR UPDATE) SELECT * FROM x", "The SQL starts with WITH")]
    [InlineData("SELECT 'unterminated", "The SQL has an unterminated string literal.")]
    [InlineData("SELECT \"unterminated", "The SQL has an unterminated quoted identifier.")]
    [InlineData("SELECT 1 /* unterminated", "The SQL has an unterminated /* comment")]
    [InlineData("SELECT $x$ unterminated", "The SQL has an unterminated dollar-quoted string.")]
    public void Bad_sql_is_rejected_with_a_clear_message(string sql, string message)
    {
        var error = Assert.Throws<ArgumentException>(() => SqlText.ValidateSelect(sql, "sql", RowLockClause.ForUpdate, claim: false));
        Assert.StartsWith(message, error.Message, StringComparison.Ordinal);
        Assert.Equal("sql", error.ParamName);
    }

    [Fact]
    public void Null_sql_is_an_argument_null_error() =>
        Assert.Throws<ArgumentNullException>(() => SqlText.ValidateSelect(null!, "sql", RowLockClause.ForUpdate, claim: false));

    [Fact]
    public void Claims_reject_a_limit_of_their_own()
    {
        var error = Assert.Throws<ArgumentException>(() => SqlText.ValidateSelect("SELECT id FROM jobs LIMIT 5", "sql", RowLockClause.ForUpdate.SkipLocked(), claim: true));
        Assert.StartsWith("The SQL already has a LIMIT.", error.Message, StringComparison.Ordinal);
        SqlText.ValidateSelect("SELECT id FROM jobs WHERE id IN (SELECT id FROM x LIMIT 5)", "sql", RowLockClause.ForUpdate.SkipLocked(), claim: true);
    }
}
