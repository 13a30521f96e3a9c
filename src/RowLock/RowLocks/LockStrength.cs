namespace RowLock;

/// <summary>The strength of a row lock, strongest first. See PostgreSQL's "Row-Level Locks" table for what conflicts with what.</summary>
public enum LockStrength
{
    /// <summary><c>FOR UPDATE</c>: blocks every other row lock and every UPDATE or DELETE of the row.</summary>
    Update = 0,

    /// <summary><c>FOR NO KEY UPDATE</c>: like UPDATE but lets <c>FOR KEY SHARE</c> through (foreign-key checks do not wait).</summary>
    NoKeyUpdate,

    /// <summary><c>FOR SHARE</c>: several holders at once; blocks UPDATE, DELETE and the exclusive locks.</summary>
    Share,

    /// <summary><c>FOR KEY SHARE</c>: blocks DELETE and key changes only; non-key updates go through.</summary>
    KeyShare,
}
