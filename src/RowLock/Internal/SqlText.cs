namespace RowLock.Internal;

/// <summary>
/// Checks, before anything is sent, the SELECT a lock helper is about to append a locking clause to. The SQL is
/// tokenized the way PostgreSQL does it (<see cref="SqlLexer"/>), then checked by <see cref="LockedSelectRules"/>
/// against PostgreSQL's rules for "The Locking Clause": one statement, no data-modifying statement anywhere, no
/// shape PostgreSQL refuses with the clause, and no rows the clause would silently not lock.
/// </summary>
internal static class SqlText
{
    /// <summary>
    /// Throws <see cref="ArgumentException"/> (named <paramref name="paramName"/>) unless <paramref name="sql"/> is one
    /// SELECT that <paramref name="clause"/> can be appended to and that then locks the rows it returns.
    /// </summary>
    /// <param name="sql">The caller's SELECT.</param>
    /// <param name="paramName">The parameter name reported in the exception.</param>
    /// <param name="clause">The clause to be appended; its OF list and wait policy matter.</param>
    /// <param name="claim">True for ClaimRowsAsync, which appends LIMIT n itself.</param>
    public static void ValidateSelect(string sql, string paramName, RowLockClause clause, bool claim)
    {
        ArgumentNullException.ThrowIfNull(sql, paramName);
        if (string.IsNullOrWhiteSpace(sql))
        {
            throw new ArgumentException("The SQL is empty. Pass one SELECT statement, without a locking clause.", paramName);
        }

        var tokens = SqlLexer.Tokenize(sql, paramName);
        if (tokens.Count == 0)
        {
            throw new ArgumentException("The SQL holds no statement (only comments). Pass one SELECT statement.", paramName);
        }

        var of = clause.Tables;
        new LockedSelectRules(sql, tokens, paramName, of.Count == 0 ? null : of, claim, clause.WaitPolicy == LockWaitPolicy.SkipLocked).Check();
    }
}
