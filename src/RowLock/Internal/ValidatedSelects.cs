namespace RowLock.Internal;

/// <summary>
/// The SELECTs that passed <see cref="SqlText.ValidateSelect"/>, with the locking SQL built from them, so that a helper
/// called again with the same text and clause neither lexes the SQL nor builds the string again. Validation is a pure
/// function of the text, the clause's strength, wait policy and OF list, and whether it is a claim; only successes
/// are kept, so refused SQL is checked (and refused) on every call. Bounded: past <see cref="Capacity"/> entries the
/// cache starts over, so SQL built with inline values cannot grow it without limit. What depends on the session
/// (<see cref="SqlText.ValidateForSession"/>) is not cached.
/// </summary>
internal static class ValidatedSelects
{
    public const int Capacity = BoundedCache<Key, ValidatedSelect>.Capacity;

    private static readonly BoundedCache<Key, ValidatedSelect> Cache = new();

    /// <summary>How many entries the cache holds now (tests check the bound).</summary>
    public static int Count => Cache.Count;

    /// <summary>
    /// Validates <paramref name="sql"/> for <paramref name="clause"/> (throws as <see cref="SqlText.ValidateSelect"/>
    /// does) and returns the SQL to send (for a lock, the SELECT with the clause appended; for a claim, the SELECT itself:
    /// the caller appends LIMIT and the clause) with the relations the clause reaches, for <see cref="ServerShapeCheck"/>.
    /// </summary>
    public static ValidatedSelect Validate(string sql, string paramName, RowLockClause clause, bool claim)
    {
        ArgumentNullException.ThrowIfNull(sql, paramName);
        var key = new Key(sql, clause, claim);
        if (Cache.TryGetValue(key, out var validated))
        {
            return validated;
        }

        var relations = SqlText.ValidateSelect(sql, paramName, clause, claim);
        validated = new ValidatedSelect(claim ? sql : sql + "\n" + clause.ToSql(), new LockedRelations(relations));
        Cache.Add(key, validated);

        return validated;
    }

    /// <summary>What validation and the locking SQL depend on: the text, the strength, the wait policy, the OF list and claim. Not the timeout.</summary>
    private readonly struct Key(string sql, RowLockClause clause, bool claim) : IEquatable<Key>
    {
        private readonly string _sql = sql;
        private readonly RowLockClause _clause = clause;
        private readonly bool _claim = claim;

        public bool Equals(Key other)
        {
            if (_claim != other._claim || _clause.Strength != other._clause.Strength || _clause.WaitPolicy != other._clause.WaitPolicy
                || !string.Equals(_sql, other._sql, StringComparison.Ordinal))
            {
                return false;
            }

            var tables = _clause.TableArray;
            var otherTables = other._clause.TableArray;
            if (tables.IsDefaultOrEmpty || otherTables.IsDefaultOrEmpty)
            {
                return tables.IsDefaultOrEmpty && otherTables.IsDefaultOrEmpty;
            }

            if (tables.Length != otherTables.Length)
            {
                return false;
            }

            for (var i = 0; i < tables.Length; i++)
            {
                if (!string.Equals(tables[i], otherTables[i], StringComparison.Ordinal))
                {
                    return false;
                }
            }

            return true;
        }

        public override bool Equals(object? obj) => obj is Key other && Equals(other);

        public override int GetHashCode() => HashCode.Combine(_sql, _clause.Strength, _clause.WaitPolicy, _claim, _clause.TableArray.IsDefault ? 0 : _clause.TableArray.Length);
    }
}

/// <summary>A SELECT that passed the text checks: the SQL to send and the relations the clause reaches.</summary>
internal sealed record ValidatedSelect(string LockingSql, LockedRelations Relations);
