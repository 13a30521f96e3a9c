using System.Runtime.InteropServices;

namespace RowLock.Internal;

/// <summary>
/// The rules a SELECT must meet before a locking clause is appended to it, checked on the token stream. PostgreSQL
/// applies a clause without OF to every table in the FROM clause and, pushed down, to every subquery in FROM; it
/// ignores WITH queries (their rows are silently not locked) and refuses set operations, DISTINCT, GROUP BY, HAVING,
/// aggregates, window functions, set-returning functions in the select list and the nullable side of an outer join
/// in every SELECT the clause reaches. Each refusal says what to write instead. When in doubt, refuse.
/// </summary>
internal readonly struct LockedSelectRules
{
    private readonly string _sql;
    private readonly List<SqlToken> _tokens;
    private readonly string _paramName;
    private readonly IReadOnlyList<string>? _of;
    private readonly bool _claim;
    private readonly bool _skipLocked;
    private readonly List<string> _withNames;
    private readonly List<string> _relations;
    private readonly List<string> _builtinFunctions;

    public LockedSelectRules(string sql, List<SqlToken> tokens, string paramName, IReadOnlyList<string>? of, bool claim, bool skipLocked)
    {
        _sql = sql;
        _tokens = tokens;
        _paramName = paramName;
        _of = of;
        _claim = claim;
        _skipLocked = skipLocked;
        _withNames = [];
        _relations = [];
        _builtinFunctions = [];
    }

    private const string UseOf = "RowLockClause.ForUpdate.Of(\"table\")";

    /// <summary>
    /// Checks the SQL and returns the relations the clause reaches, each as a quoted (schema-qualified when written so)
    /// name: the server check (<see cref="ServerShapeCheck"/>) finds out which of them are views and checks their definitions.
    /// Unqualified names taken for built-in set-returning functions follow, as <see cref="LockedRelations.Function"/> entries,
    /// for the server check to make sure they reach the built-in.
    /// </summary>
    public IReadOnlyList<string> Check()
    {
        CheckOneStatement();
        MatchParentheses();
        CheckNoWrites();

        var first = 0;
        var last = _tokens.Count - 1;
        while (Kind(first) == SqlTokenKind.OpenParen)
        {
            var close = _tokens[first].Match;
            if (close != last)
            {
                if (IsWord(close + 1, "UNION") || IsWord(close + 1, "INTERSECT") || IsWord(close + 1, "EXCEPT"))
                {
                    throw SetOperation(close + 1);
                }

                throw Refuse("The SQL starts with '(' but goes on after the matching ')'. Write the SELECT without the outer parentheses, "
                    + "with its ORDER BY or LIMIT inside the same SELECT.");
            }

            first++;
            last--;
        }

        if (first > last)
        {
            throw Refuse("The SQL holds only parentheses. Pass one SELECT statement.");
        }

        if (IsWord(first, "WITH"))
        {
            CheckWith(first, last);
        }
        else if (IsWord(first, "SELECT"))
        {
            CheckSelect(first, last, _of, isMain: true, inFrom: false);
        }
        else
        {
            throw NotASelect(first, "");
        }

        if (_relations.Count == 0)
        {
            throw Refuse(_of is null
                ? "The SQL reads no table the locking clause can lock: it has no FROM clause, or its FROM clause holds only functions, VALUES or WITH queries, which PostgreSQL silently does not lock. "
                    + "Select from the table whose rows you want locked (SELECT ... FROM t WHERE id = @id), not through a scalar subquery or a function."
                : "RowLockClause.Of names no table the clause can lock: only a function, VALUES or a subquery that reads none. Name the table (or its alias) in FROM whose rows to lock.");
        }

        // Unqualified names taken for built-in set-returning functions: the server check makes sure no function of the same
        // name outside pg_catalog is visible, which the call could reach instead (LockedRelations.Function).
        foreach (var function in _builtinFunctions)
        {
            _relations.Add(LockedRelations.Function(function));
        }

        return _relations;
    }

    private void CheckOneStatement()
    {
        for (var i = 0; i < _tokens.Count; i++)
        {
            if (Kind(i) != SqlTokenKind.Semicolon)
            {
                continue;
            }

            for (var j = i + 1; j < _tokens.Count; j++)
            {
                if (Kind(j) != SqlTokenKind.Semicolon)
                {
                    throw Refuse("The SQL holds several statements. Pass one SELECT statement; RowLock appends the locking clause to it. "
                        + "Mind that a -- comment ends at a line feed or a carriage return.");
                }
            }

            throw Refuse("Remove the trailing ';': RowLock appends the locking clause to the statement, so it must end with the SELECT itself.");
        }
    }

    private void MatchParentheses()
    {
        var tokens = CollectionsMarshal.AsSpan(_tokens);
        Span<int> stack = tokens.Length <= 256 ? stackalloc int[tokens.Length] : new int[tokens.Length];
        var depth = 0;
        for (var i = 0; i < tokens.Length; i++)
        {
            if (tokens[i].Kind == SqlTokenKind.OpenParen)
            {
                stack[depth++] = i;
            }
            else if (tokens[i].Kind == SqlTokenKind.CloseParen)
            {
                if (depth == 0)
                {
                    throw Refuse("The SQL has a ')' that closes nothing. Check its parentheses.");
                }

                var open = stack[--depth];
                tokens[open].Match = i;
                tokens[i].Match = open;
            }
        }

        if (depth > 0)
        {
            throw Refuse("The SQL has a '(' that is never closed; the locking clause appended after it would end up inside. Check its parentheses.");
        }
    }

    /// <summary>No INSERT, UPDATE, DELETE or MERGE anywhere (a lock call must never write), and no SELECT ... INTO.</summary>
    private void CheckNoWrites()
    {
        for (var i = 0; i < _tokens.Count; i++)
        {
            if (Kind(i) != SqlTokenKind.Word || Kind(i - 1) == SqlTokenKind.Dot || IsWord(i - 1, "AS"))
            {
                continue;
            }

            var isUpdate = IsWord(i, "UPDATE");
            if (isUpdate && (IsWord(i - 1, "FOR") || IsWord(i - 1, "KEY")))
            {
                continue; // FOR UPDATE / FOR NO KEY UPDATE: a lock strength, checked by depth later.
            }

            if (isUpdate || IsWord(i, "INSERT") || IsWord(i, "DELETE") || IsWord(i, "MERGE"))
            {
                if (i == 0)
                {
                    throw NotASelect(i, "");
                }

                throw Refuse($"The SQL contains {Upper(i)}: a lock helper never runs a data-modifying statement, not even inside WITH or a subquery. "
                    + $"Run the {Upper(i)} as its own command in the same transaction, and pass only the SELECT that reads the rows to lock.");
            }

            if (IsWord(i, "INTO"))
            {
                throw Refuse("The SQL contains SELECT ... INTO, which creates a table. Remove INTO: the helper returns the locked rows.");
            }
        }
    }

    private void CheckWith(int first, int last)
    {
        var i = first + 1;
        if (IsWord(i, "RECURSIVE"))
        {
            i++;
        }

        var main = -1;
        var expectName = true;
        for (; i <= last; i++)
        {
            var kind = Kind(i);
            if (kind == SqlTokenKind.OpenParen)
            {
                i = _tokens[i].Match;
                continue;
            }

            if (kind == SqlTokenKind.Comma)
            {
                expectName = true;
                continue;
            }

            if (expectName && kind is SqlTokenKind.Word or SqlTokenKind.QuotedIdentifier)
            {
                _withNames.Add(Name(i));
                expectName = false;
                continue;
            }

            if (IsWord(i, "SELECT") || IsWord(i, "VALUES") || IsWord(i, "TABLE"))
            {
                main = i;
                break;
            }
        }

        if (main < 0 || !IsWord(main, "SELECT"))
        {
            throw main < 0
                ? Refuse("The SQL has WITH queries but no final SELECT after them. Pass one WITH ... SELECT statement.")
                : NotASelect(main, "after its WITH queries ");
        }

        if (_of is null)
        {
            throw Refuse("The SQL starts with WITH: a locking clause without OF does not reach rows read through a WITH query, so they would not be locked. "
                + $"Name the tables of the final SELECT's FROM clause whose rows to lock with {UseOf} (PostgreSQL then checks they are there), "
                + "or move the WITH query into a subquery in FROM.");
        }

        foreach (var name in _of)
        {
            if (_withNames.Contains(name, StringComparer.Ordinal))
            {
                throw Refuse($"RowLockClause.Of names '{name}', a WITH query: PostgreSQL cannot lock the rows of a WITH query. "
                    + "Name the table (or its alias) in the final SELECT's FROM clause whose rows to lock, and join the WITH query to it.");
            }
        }

        CheckSelect(main, last, _of, isMain: true, inFrom: false);
    }

    private enum Clause
    {
        SelectList,
        From,
        Other,
    }

    /// <summary>
    /// Checks one SELECT that the clause reaches, tokens <paramref name="first"/>..<paramref name="last"/> at one
    /// parenthesis depth. <paramref name="of"/> null means every table is locked (no OF, or pushed down into a
    /// subquery); <paramref name="inFrom"/> starts inside a parenthesised join in FROM.
    /// </summary>
    private void CheckSelect(int first, int last, IReadOnlyList<string>? of, bool isMain, bool inFrom)
    {
        var clause = inFrom ? Clause.From : Clause.SelectList;
        var segmentStart = first;
        for (var i = first; i <= last; i++)
        {
            var kind = Kind(i);
            if (kind == SqlTokenKind.OpenParen)
            {
                var close = _tokens[i].Match;
                if (clause == Clause.From && (i == first || Kind(i - 1) is SqlTokenKind.Comma or SqlTokenKind.OpenParen
                    || IsWord(i - 1, "FROM") || IsWord(i - 1, "JOIN") || IsWord(i - 1, "LATERAL")))
                {
                    CheckFromGroup(i, close, of);
                }
                else if (clause == Clause.SelectList && HasSubquery(i, close))
                {
                    throw Refuse("The SQL has a subquery in its select list: a locking clause does not lock the rows a subquery there reads, and after waiting for a lock "
                        + "PostgreSQL re-reads only the locked rows, so the subquery's values can be stale. Join the table in FROM (the clause then locks its rows), "
                        + "or read it in a later statement once the lock is held. Subqueries in WHERE are fine.");
                }

                i = close;
                continue;
            }

            if (kind == SqlTokenKind.Comma && clause == Clause.From)
            {
                segmentStart = i + 1;
                continue;
            }

            if (clause == Clause.From && kind is SqlTokenKind.Word or SqlTokenKind.QuotedIdentifier && IsFromItemStart(i, first, inFrom))
            {
                i = CheckFromItem(i, last, of);
                continue;
            }

            if (kind != SqlTokenKind.Word)
            {
                continue;
            }

            if (Kind(i + 1) == SqlTokenKind.OpenParen)
            {
                CheckFunctionCall(i, clause);
            }

            if (Kind(i - 1) == SqlTokenKind.Dot || IsWord(i - 1, "AS"))
            {
                continue; // a column, table or alias name, never a keyword
            }

            if (IsWord(i, "SELECT"))
            {
                clause = Clause.SelectList;
                if (IsWord(i + 1, "DISTINCT"))
                {
                    throw Refuse("The SQL uses SELECT DISTINCT: PostgreSQL refuses a locking clause with DISTINCT, whose rows are no longer table rows. "
                        + "Remove DISTINCT (de-duplicate in code), or select the keys in a subquery: SELECT ... FROM t WHERE id IN (SELECT DISTINCT ...).");
                }
            }
            else if (IsWord(i, "FROM"))
            {
                if (clause == Clause.SelectList && !IsWord(i - 1, "DISTINCT"))
                {
                    clause = Clause.From;
                    segmentStart = i + 1;
                }
            }
            else if (IsWord(i, "UNION") || IsWord(i, "INTERSECT") || IsWord(i, "EXCEPT"))
            {
                throw SetOperation(i);
            }
            else if (IsWord(i, "GROUP") && IsWord(i + 1, "BY"))
            {
                throw Refuse("The SQL uses GROUP BY: PostgreSQL refuses a locking clause with GROUP BY, whose rows are groups, not table rows. "
                    + "Lock the rows themselves (SELECT ... FROM t WHERE id IN (SELECT ... GROUP BY ...)) and aggregate in code or in a later statement.");
            }
            else if (IsWord(i, "HAVING"))
            {
                throw Refuse("The SQL uses HAVING: PostgreSQL refuses a locking clause with HAVING (an aggregate query). "
                    + "Lock the rows themselves (SELECT ... FROM t WHERE id IN (SELECT ... GROUP BY ... HAVING ...)) and aggregate in a later statement.");
            }
            else if (IsWord(i, "OVER") || IsWord(i, "WINDOW"))
            {
                throw Refuse($"The SQL uses a window function ({Upper(i)}): PostgreSQL refuses a locking clause with window functions. "
                    + "Lock the rows with a plain SELECT, then compute the window function in a later statement or in code.");
            }
            else if ((IsWord(i, "WITHIN") && IsWord(i + 1, "GROUP")) || (IsWord(i, "FILTER") && Kind(i + 1) == SqlTokenKind.OpenParen))
            {
                throw Aggregate($"{Upper(i)} ...");
            }
            else if (IsWord(i, "WHERE") || IsWord(i, "ORDER") || IsWord(i, "OFFSET"))
            {
                clause = Clause.Other;
            }
            else if (IsWord(i, "LIMIT"))
            {
                clause = Clause.Other;
                if (isMain && _claim)
                {
                    throw Refuse("The SQL already has a LIMIT. ClaimRowsAsync appends LIMIT itself; pass the batch size as its limit argument.");
                }
            }
            else if (IsWord(i, "FETCH"))
            {
                clause = Clause.Other;
                if (isMain && _claim)
                {
                    throw Refuse("The SQL has FETCH FIRST/NEXT, a LIMIT of its own. ClaimRowsAsync appends LIMIT itself; pass the batch size as its limit argument.");
                }
            }
            else if (IsWord(i, "WITH") && IsWord(i + 1, "TIES") && isMain && _skipLocked)
            {
                throw Refuse("The SQL uses FETCH ... WITH TIES, which PostgreSQL refuses with SKIP LOCKED. Use FETCH ... ROWS ONLY (or LIMIT), or another wait policy.");
            }
            else if (IsWord(i, "FOR") && isMain)
            {
                throw IsWord(i + 1, "READ")
                    ? Refuse("The SQL ends with FOR READ ONLY, which contradicts a lock (and PostgreSQL refuses a locking clause after it). Remove it.")
                    : Refuse("The SQL already has a locking clause (FOR UPDATE / FOR SHARE ...). Remove it and pass the lock as a RowLockClause, so RowLock can add NOWAIT, SKIP LOCKED or a timeout safely.");
            }
            else if (clause == Clause.From && (IsWord(i, "LEFT") || IsWord(i, "RIGHT") || IsWord(i, "FULL"))
                && (IsWord(i + 1, "OUTER") || IsWord(i + 1, "JOIN")))
            {
                CheckOuterJoin(i, segmentStart, last, of);
            }
        }
    }

    /// <summary>True when a subquery starts anywhere between the '(' at <paramref name="open"/> and its ')' at <paramref name="close"/>, nested in expressions too.</summary>
    private bool HasSubquery(int open, int close)
    {
        for (var k = open; k < close; k++)
        {
            if (Kind(k) == SqlTokenKind.OpenParen && StartsSubquery(k))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>True when the '(' at <paramref name="open"/> starts a subquery (SELECT, WITH, VALUES or TABLE, maybe in more parentheses).</summary>
    private bool StartsSubquery(int open)
    {
        var inner = open + 1;
        while (Kind(inner) == SqlTokenKind.OpenParen)
        {
            inner++;
        }

        return IsWord(inner, "SELECT") || IsWord(inner, "WITH") || IsWord(inner, "VALUES") || IsWord(inner, "TABLE");
    }

    /// <summary>
    /// True when the name at <paramref name="i"/> begins a FROM item: it follows FROM, a comma, JOIN, LATERAL or ONLY, or
    /// opens a parenthesised join (<paramref name="inFrom"/> and <paramref name="i"/> is its first token).
    /// </summary>
    private bool IsFromItemStart(int i, int first, bool inFrom)
    {
        if (Kind(i - 1) == SqlTokenKind.Dot)
        {
            return false;
        }

        if (i == first)
        {
            return inFrom;
        }

        return Kind(i - 1) == SqlTokenKind.Comma || IsWord(i - 1, "FROM") || IsWord(i - 1, "JOIN") || IsWord(i - 1, "LATERAL") || IsWord(i - 1, "ONLY");
    }

    /// <summary>
    /// One FROM item that is not in parentheses: a table or view (recorded when the clause reaches it), a function call or
    /// ROWS FROM (PostgreSQL never locks what a function returns), or a keyword that leads the item (LATERAL, ONLY). Returns
    /// the last token it consumed.
    /// </summary>
    private int CheckFromItem(int i, int last, IReadOnlyList<string>? of)
    {
        if (IsWord(i, "LATERAL") || IsWord(i, "ONLY"))
        {
            return i; // the item follows
        }

        if (IsWord(i, "ROWS") && IsWord(i + 1, "FROM") && Kind(i + 2) == SqlTokenKind.OpenParen)
        {
            var close = _tokens[i + 2].Match;
            CheckFunctionItem(close, "ROWS FROM (...)", pure: false, of);
            return close;
        }

        // A (possibly qualified) name: schema.name, or database.schema.name.
        var parts = new List<string>(2) { Name(i) };
        var end = i;
        while (Kind(end + 1) == SqlTokenKind.Dot && Kind(end + 2) is SqlTokenKind.Word or SqlTokenKind.QuotedIdentifier)
        {
            end += 2;
            parts.Add(Name(end));
        }

        if (Kind(end + 1) == SqlTokenKind.OpenParen)
        {
            var close = _tokens[end + 1].Match;
            var pure = (parts.Count == 1 || (parts.Count == 2 && parts[0] == "pg_catalog")) && SqlFunctionNames.IsSetReturning(parts[^1]);
            if (pure && of is null && HasSubquery(end + 1, close))
            {
                throw Refuse($"The SQL passes a subquery to the function {parts[^1]}() in FROM: a locking clause does not lock the rows that subquery reads, "
                    + "yet the function returns values from them. Join the table the subquery reads in FROM (the clause then locks its rows), "
                    + $"or name the tables whose rows to lock with {UseOf}.");
            }

            CheckFunctionItem(close, parts[^1] + "()", pure, of);
            if (pure && of is null && parts.Count == 1 && !_builtinFunctions.Contains(parts[0], StringComparer.Ordinal))
            {
                _builtinFunctions.Add(parts[0]);
            }

            return close;
        }

        var alias = Alias(end + 1, out var aliasEnd);
        if (parts.Count == 1 && _withNames.Contains(parts[0], StringComparer.Ordinal))
        {
            return aliasEnd; // a WITH query: never locked; CheckWith and CheckFromGroup say so where it matters
        }

        if (of is null || of.Contains(alias ?? parts[^1], StringComparer.Ordinal))
        {
            var quoted = new System.Text.StringBuilder();
            foreach (var part in parts)
            {
                quoted.Append(quoted.Length == 0 ? "\"" : ".\"").Append(part.Replace("\"", "\"\"", StringComparison.Ordinal)).Append('"');
            }

            var name = quoted.ToString();
            if (!_relations.Contains(name, StringComparer.Ordinal))
            {
                _relations.Add(name);
            }
        }

        return aliasEnd;
    }

    /// <summary>The alias after a FROM item (AS optional), or null; <paramref name="end"/> is the last token of the item.</summary>
    private string? Alias(int at, out int end)
    {
        var aliasAt = IsWord(at, "AS") ? at + 1 : at;
        if (Kind(aliasAt) == SqlTokenKind.QuotedIdentifier
            || (Kind(aliasAt) == SqlTokenKind.Word && !EndsFromItem(aliasAt) && !IsWord(aliasAt, "TABLESAMPLE") && !IsWord(aliasAt, "AS")))
        {
            end = aliasAt;
            return Name(aliasAt);
        }

        end = at - 1;
        return null;
    }

    /// <summary>
    /// A function in FROM (or ROWS FROM): PostgreSQL does not lock what it returns, silently when the clause has no OF.
    /// A built-in set-returning function that reads no table (generate_series, unnest...) may sit beside a table; any
    /// other function may read tables the clause never reaches, so without OF it is refused, and OF may not name it.
    /// </summary>
    private void CheckFunctionItem(int close, string what, bool pure, IReadOnlyList<string>? of)
    {
        var alias = Alias(close + 1, out _);
        if (of is null)
        {
            if (pure)
            {
                return;
            }

            throw Refuse($"The SQL reads the function {what} in FROM: PostgreSQL never locks the rows a function returns and silently skips it under a locking clause, "
                + "so what it reads from tables would not be locked. Select from the tables themselves, or name the tables whose rows to lock with "
                + $"{UseOf} (the function's rows then stay unlocked, as you asked).");
        }

        if (alias is not null && of.Contains(alias, StringComparer.Ordinal))
        {
            throw Refuse($"RowLockClause.Of names '{alias}', the function {what} in FROM: PostgreSQL cannot lock the rows a function returns. "
                + "Name the table (or its alias) in FROM whose rows to lock.");
        }
    }

    /// <summary>A parenthesised FROM item: a subquery (locked when the clause reaches it) or a parenthesised join.</summary>
    private void CheckFromGroup(int open, int close, IReadOnlyList<string>? of)
    {
        var inner = open + 1;
        while (Kind(inner) == SqlTokenKind.OpenParen)
        {
            inner++;
        }

        var isSubquery = IsWord(inner, "SELECT") || IsWord(inner, "WITH") || IsWord(inner, "VALUES") || IsWord(inner, "TABLE");
        if (!isSubquery)
        {
            CheckSelect(open + 1, close - 1, of, isMain: false, inFrom: true);
            return;
        }

        var aliasAt = IsWord(close + 1, "AS") ? close + 2 : close + 1;
        var alias = Kind(aliasAt) is SqlTokenKind.Word or SqlTokenKind.QuotedIdentifier ? Name(aliasAt) : "";
        if (of is not null && !of.Contains(alias, StringComparer.Ordinal))
        {
            return; // OF does not name this subquery: PostgreSQL does not lock it.
        }

        var first = open + 1;
        var last = close - 1;
        while (Kind(first) == SqlTokenKind.OpenParen && _tokens[first].Match == last)
        {
            first++;
            last--;
        }

        if (IsWord(first, "WITH"))
        {
            throw Refuse($"The subquery{Quoted(alias)} in FROM has WITH queries: a locking clause does not reach rows read through them, so they would not be locked. "
                + $"Move the WITH to the top of the statement and name the tables to lock with {UseOf}.");
        }

        if (!IsWord(first, "SELECT") && !IsWord(first, "TABLE"))
        {
            return; // VALUES has no table rows to lock; PostgreSQL ignores it.
        }

        for (var i = first; i <= last && _withNames.Count > 0; i++)
        {
            if (Kind(i) is SqlTokenKind.Word or SqlTokenKind.QuotedIdentifier && _withNames.Contains(Name(i), StringComparer.Ordinal))
            {
                throw Refuse($"The subquery{Quoted(alias)} in FROM reads the WITH query '{Name(i)}', whose rows a locking clause does not reach. "
                    + "Join the table itself and name it (or its alias) in RowLockClause.Of(...), and leave this subquery out of Of.");
            }
        }

        if (IsWord(first, "TABLE"))
        {
            // TABLE name is SELECT * FROM name: the clause reaches the relation, which the server check must see (a view).
            CheckFromItem(IsWord(first + 1, "ONLY") ? first + 2 : first + 1, last, of: null);
            return;
        }

        // PostgreSQL pushes the clause down to every table of the subquery, with the same restrictions.
        CheckSelect(first, last, of: null, isMain: false, inFrom: false);
    }

    private void CheckFunctionCall(int name, Clause clause)
    {
        var span = Span(name);
        if (IsWord(_tokens[name + 1].Match + 1, "OVER"))
        {
            throw Refuse($"The SQL uses the window function {span}() OVER: PostgreSQL refuses a locking clause with window functions. "
                + "Lock the rows with a plain SELECT, then compute the window function in a later statement or in code.");
        }

        if (SqlFunctionNames.IsAggregate(span))
        {
            throw Aggregate(span.ToString() + "()");
        }

        if (clause == Clause.SelectList && SqlFunctionNames.IsSetReturning(span))
        {
            throw Refuse($"The SQL calls the set-returning function {span}() in its select list: PostgreSQL refuses a locking clause with that. "
                + $"Move it to FROM (FROM t, {span}(...) AS x) or to a later statement.");
        }
    }

    /// <summary>
    /// An outer join: without OF the clause would reach its nullable side, which PostgreSQL refuses. With OF, the
    /// names OF gives must not appear on a nullable side (for RIGHT JOIN everything before it in this FROM segment;
    /// for LEFT JOIN the item after it; FULL both). Every name on that side counts (table, alias, names inside a
    /// parenthesised join, and for RIGHT JOIN the ON conditions before it): in doubt, refuse.
    /// </summary>
    private void CheckOuterJoin(int keyword, int segmentStart, int last, IReadOnlyList<string>? of)
    {
        var join = $"{Upper(keyword)} JOIN";
        if (of is null)
        {
            throw Refuse($"The SQL has a {join}: PostgreSQL refuses to lock the nullable side of an outer join, and a clause without OF (or a subquery it reaches) locks every table. "
                + $"Name the tables whose rows to lock with {UseOf}, leaving out the table on the nullable side.");
        }

        var joinAt = IsWord(keyword + 1, "OUTER") ? keyword + 2 : keyword + 1;
        var left = IsWord(keyword, "LEFT") || IsWord(keyword, "FULL");
        var right = IsWord(keyword, "RIGHT") || IsWord(keyword, "FULL");
        if (right)
        {
            RefuseNullable(segmentStart, keyword - 1, join, of);
        }

        if (left)
        {
            var end = joinAt + 1;
            while (end <= last && !EndsFromItem(end))
            {
                end = Kind(end) == SqlTokenKind.OpenParen ? _tokens[end].Match + 1 : end + 1;
            }

            RefuseNullable(joinAt + 1, end - 1, join, of);
        }
    }

    private bool EndsFromItem(int i) => Kind(i) == SqlTokenKind.Comma
        || IsWord(i, "ON") || IsWord(i, "USING") || IsWord(i, "JOIN") || IsWord(i, "LEFT") || IsWord(i, "RIGHT") || IsWord(i, "FULL")
        || IsWord(i, "INNER") || IsWord(i, "CROSS") || IsWord(i, "NATURAL") || IsWord(i, "WHERE") || IsWord(i, "GROUP")
        || IsWord(i, "HAVING") || IsWord(i, "WINDOW") || IsWord(i, "ORDER") || IsWord(i, "LIMIT") || IsWord(i, "OFFSET")
        || IsWord(i, "FETCH") || IsWord(i, "FOR") || IsWord(i, "UNION") || IsWord(i, "INTERSECT") || IsWord(i, "EXCEPT");

    private void RefuseNullable(int first, int last, string join, IReadOnlyList<string> of)
    {
        for (var i = first; i <= last; i++)
        {
            if (Kind(i) == SqlTokenKind.OpenParen)
            {
                // Descend into a parenthesised join; a subquery or a function's arguments are named by the alias after them.
                var inner = i + 1;
                while (Kind(inner) == SqlTokenKind.OpenParen)
                {
                    inner++;
                }

                var joinGroup = !(IsWord(inner, "SELECT") || IsWord(inner, "WITH") || IsWord(inner, "VALUES") || IsWord(inner, "TABLE"))
                    && (Kind(i - 1) != SqlTokenKind.Word || IsWord(i - 1, "JOIN") || IsWord(i - 1, "LATERAL") || IsWord(i - 1, "FROM"));
                if (!joinGroup)
                {
                    i = _tokens[i].Match;
                }

                continue;
            }

            if (Kind(i) is not (SqlTokenKind.Word or SqlTokenKind.QuotedIdentifier))
            {
                continue;
            }

            var name = Name(i);
            if (of.Contains(name, StringComparer.Ordinal))
            {
                throw Refuse($"RowLockClause.Of names '{name}', which is on the nullable side of a {join}: PostgreSQL refuses to lock it. "
                    + "Name only tables on the preserved side of the join in Of(...), or use an inner JOIN.");
            }
        }
    }

    private ArgumentException SetOperation(int i) => Refuse(
        $"The SQL uses {Upper(i)}: PostgreSQL refuses a locking clause with UNION, INTERSECT or EXCEPT. "
        + "Lock the rows of each SELECT with its own call, or read the keys first and lock them with LockRowsByKeyAsync.");

    private ArgumentException Aggregate(string what) => Refuse(
        $"The SQL calls the aggregate function {what}: PostgreSQL refuses a locking clause with aggregate functions. "
        + "Lock the rows with a plain SELECT (an aggregate may stay inside a WHERE subquery), then aggregate in a later statement or in code.");

    private ArgumentException NotASelect(int i, string where)
    {
        var word = Kind(i) == SqlTokenKind.Word ? Upper(i) : _sql.Substring(_tokens[i].Start, Math.Min(_tokens[i].Length, 20));
        var advice = word switch
        {
            "TABLE" => " Write SELECT * FROM the table instead.",
            "VALUES" => " VALUES has no table rows to lock: select from the table instead.",
            "INSERT" or "UPDATE" or "DELETE" or "MERGE" => " A lock helper never runs a data-modifying statement: run it as its own command, and pass only the SELECT that reads the rows to lock.",
            _ => " Pass one SELECT (or WITH ... SELECT) statement without a locking clause.",
        };
        return Refuse($"The SQL must be a SELECT (or WITH ... SELECT) statement; {where}it starts with '{word}'.{advice}");
    }

    private ArgumentException Refuse(string message) => new(message, _paramName);

    private static string Quoted(string alias) => alias.Length == 0 ? "" : $" '{alias}'";

    private SqlTokenKind Kind(int i) => (uint)i < (uint)_tokens.Count ? _tokens[i].Kind : (SqlTokenKind)255;

    private ReadOnlySpan<char> Span(int i) => _sql.AsSpan(_tokens[i].Start, _tokens[i].Length);

    private string Upper(int i) => Span(i).ToString().ToUpperInvariant();

    private bool IsWord(int i, string keyword) => Kind(i) == SqlTokenKind.Word && Span(i).Equals(keyword, StringComparison.OrdinalIgnoreCase);

    /// <summary>A name as PostgreSQL resolves it: unquoted words fold ASCII letters to lower case; "" undoubles in quoted ones.</summary>
    private string Name(int i)
    {
        var span = Span(i);
        if (Kind(i) == SqlTokenKind.Word)
        {
            return string.Create(span.Length, (_sql, _tokens[i].Start), static (chars, state) =>
            {
                for (var k = 0; k < chars.Length; k++)
                {
                    var c = state._sql[state.Start + k];
                    chars[k] = c is >= 'A' and <= 'Z' ? (char)(c + 32) : c;
                }
            });
        }

        if (span[0] != '"')
        {
            // U&"..." (maybe with UESCAPE): PostgreSQL decodes its escapes, so the name the checks would compare and send to the
            // server check is not the one PostgreSQL resolves; an unresolved name is skipped there. Refuse rather than guess.
            throw Refuse($"The SQL names a table, alias or WITH query with a Unicode-escaped identifier ({span}). RowLock cannot check what it names; "
                + "write it as a plain \"quoted\" identifier with the characters themselves.");
        }

        return span[1..^1].ToString().Replace("\"\"", "\"", StringComparison.Ordinal);
    }
}
