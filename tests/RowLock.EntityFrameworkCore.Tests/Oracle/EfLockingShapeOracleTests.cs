using Microsoft.EntityFrameworkCore;

namespace RowLock.EntityFrameworkCore.Tests.Oracle;

/// <summary>
/// The EF locking-shape oracle: every query shape a user can write with <c>WithRowLock</c>, one line each, run through the
/// same checks. An accepted shape must be exact (<see cref="Workers"/> x <see cref="Increments"/> concurrent increments
/// through the value the locking query read, written back with SaveChanges, end at exactly that many) and must hold every
/// table row it returned locked (a second connection's FOR UPDATE NOWAIT gets 55P03). A refused shape must be refused
/// before anything is sent. A new shape is one line in <see cref="Corpus"/>.
/// </summary>
public sealed class EfLockingShapeOracleTests(OracleFixture oracle) : IClassFixture<OracleFixture>
{
    private const int Workers = 4;
    private const int Increments = 10;
    private static readonly RowLockClause Lock = RowLockClause.ForUpdate;

    private static readonly Func<OracleContext, int, IAsyncEnumerable<Account>> CompiledById =
        EF.CompileAsyncQuery((OracleContext db, int id) => db.Accounts.Where(a => a.Id == id).WithRowLock(RowLockClause.ForUpdate));

    private const string Balance = "SELECT \"Balance\" FROM accounts WHERE \"Id\" = 1";
    private const string Amount = "SELECT \"Amount\" FROM entries WHERE \"Id\" = 1";

    /// <summary>The corpus: name, the query (or the read), how to increment what it read, the counter, the rows it must hold locked.</summary>
    public static readonly IReadOnlyList<LockShape> Corpus =
    [
        Exact("table", db => db.Accounts.Where(a => a.Id == 1).WithRowLock(Lock), (db, a) => a.Balance++, Balance, "accounts"),
        Exact("table, timed lock in a savepoint", db => db.Accounts.Where(a => a.Id == 1).WithRowLock(Lock.WithTimeout(TimeSpan.FromMinutes(1))), (db, a) => a.Balance++, Balance, "accounts"),
        Exact("table, OrderBy + Take", db => db.Accounts.OrderBy(a => a.Id).Take(1).WithRowLock(Lock), (db, a) => a.Balance++, Balance, "accounts"),
        Exact("AsNoTracking, written back through a stub", db => db.Accounts.AsNoTracking().Where(a => a.Id == 1).WithRowLock(Lock), (db, a) => SetBalance(db, a.Balance + 1), Balance, "accounts"),
        Exact("AsNoTrackingWithIdentityResolution", db => db.Accounts.AsNoTrackingWithIdentityResolution().Where(a => a.Id == 1).WithRowLock(Lock), (db, a) => SetBalance(db, a.Balance + 1), Balance, "accounts"),
        Exact("projection to an anonymous type", db => db.Accounts.Where(a => a.Id == 1).Select(a => new { a.Id, a.Balance }).WithRowLock(Lock), (db, a) => SetBalance(db, a.Balance + 1), Balance, "accounts"),
        Exact("projection to a DTO", db => db.Accounts.Where(a => a.Id == 1).Select(a => new AccountDto(a.Id, a.Balance)).WithRowLock(Lock), (db, a) => SetBalance(db, a.Balance + 1), Balance, "accounts"),
        Exact("projection of a scalar", db => db.Accounts.Where(a => a.Id == 1).Select(a => a.Balance).WithRowLock(Lock), (db, b) => SetBalance(db, b + 1), Balance, "accounts"),
        Exact("compiled query (EF.CompileAsyncQuery)", async db => await CompiledById(db, 1).SingleAsync(), (db, a) => a.Balance++, Balance, "accounts"),
        Exact("entity tracked (unlocked read) before the locking read", db => Tracked(db, db.Accounts.Where(a => a.Id == 1)).WithRowLock(Lock), (db, a) => a.Balance++, Balance, "accounts"),
        Exact("entity tracked before a no-tracking locking read", db => Tracked(db, db.Accounts.Where(a => a.Id == 1)).AsNoTracking().WithRowLock(Lock), (db, a) => SetBalance(db, a.Balance + 1), Balance, "accounts"),
        Exact("Include of a collection (made a split query)", db => db.Accounts.Include(a => a.Entries).Where(a => a.Id == 1).WithRowLock(Lock), (db, a) => a.Entries.Single(e => e.Id == 1).Amount++, Amount, "accounts", "entries"),
        Exact("Include of a collection, AsSplitQuery()", db => db.Accounts.Include(a => a.Entries).AsSplitQuery().Where(a => a.Id == 1).WithRowLock(Lock), (db, a) => a.Entries.Single(e => e.Id == 1).Amount++, Amount, "accounts", "entries"),
        Exact("Include of a collection, paged (Take)", db => db.Accounts.Include(a => a.Entries).OrderBy(a => a.Id).Take(1).WithRowLock(Lock), (db, a) => a.Entries.Single(e => e.Id == 1).Amount++, Amount, "accounts", "entries"),
        Exact("Include of a collection, tracked before", db => Tracked(db, db.Accounts.Include(a => a.Entries).Where(a => a.Id == 1)).WithRowLock(Lock), (db, a) => a.Entries.Single(e => e.Id == 1).Amount++, Amount, "accounts", "entries"),
        Exact("Include of a required reference (INNER JOIN)", db => db.Entries.Include(e => e.Account).Where(e => e.Id == 1).WithRowLock(Lock), (db, e) => e.Account.Balance++, Balance, "entries", "accounts"),
        Exact("Include of a required reference with Of(entries)", db => db.Entries.Include(e => e.Account).Where(e => e.Id == 1).WithRowLock(Lock.Of("entries")), (db, e) => e.Account.Balance++, Balance, "entries", "accounts"),
        Exact("owned one in the owner's table", db => db.Boxes.Where(b => b.Id == 1).WithRowLock(Lock), (db, b) => b.Size.Count++, "SELECT \"Size_Count\" FROM boxes WHERE \"Id\" = 1", "boxes"),
        Exact("owned many in its own table (made a split query)", db => db.Crates.Where(c => c.Id == 1).WithRowLock(Lock), (db, c) => c.Slots[0].Count++, "SELECT \"Count\" FROM crate_slots WHERE \"CrateId\" = 1", "crates", "crate_slots:\"CrateId\" = 1"),
        Exact("owned one as JSON", db => db.Folders.Where(f => f.Id == 1).WithRowLock(Lock), (db, f) => f.Meta.Count++, "SELECT (\"Meta\"->>'Count')::int FROM folders WHERE \"Id\" = 1", "folders"),
        Exact("owned many as JSON", db => db.Folders.Where(f => f.Id == 1).WithRowLock(Lock), (db, f) => f.History[0].Count++, "SELECT (\"History\"->0->>'Count')::int FROM folders WHERE \"Id\" = 1", "folders"),
        Exact("TPH base set", db => db.Vehicles.Where(v => v.Id == 1).WithRowLock(Lock), (db, v) => ((Truck)v).Load++, "SELECT \"Load\" FROM vehicles WHERE \"Id\" = 1", "vehicles"),
        Exact("TPH derived set", db => db.Set<Truck>().Where(v => v.Id == 1).WithRowLock(Lock), (db, t) => t.Load++, "SELECT \"Load\" FROM vehicles WHERE \"Id\" = 1", "vehicles"),
        Exact("TPT derived set", db => db.Set<Dog>().Where(d => d.Id == 1).WithRowLock(Lock), (db, d) => d.Barks++, "SELECT \"Barks\" FROM dogs WHERE \"Id\" = 1", "animals", "dogs"),
        Exact("TPT derived set, base column", db => db.Set<Dog>().Where(d => d.Id == 1).WithRowLock(Lock), (db, d) => d.Age++, "SELECT \"Age\" FROM animals WHERE \"Id\" = 1", "animals", "dogs"),
        Exact("TPC concrete set", db => db.Set<Circle>().Where(c => c.Id == 1).WithRowLock(Lock), (db, c) => c.Radius++, "SELECT \"Radius\" FROM circles WHERE \"Id\" = 1", "circles"),
        Exact("TPC OfType<Circle>()", db => db.Figures.OfType<Circle>().Where(c => c.Id == 1).WithRowLock(Lock), (db, c) => c.Radius++, "SELECT \"Radius\" FROM circles WHERE \"Id\" = 1", "circles"),
        Exact("table splitting, required dependent (self-join made INNER)", db => db.Cars.Include(c => c.Engine).Where(c => c.Id == 1).WithRowLock(Lock), (db, c) => c.Engine.Power++, "SELECT \"Power\" FROM cars WHERE \"Id\" = 1", "cars"),
        Exact("global query filter", db => db.Tickets.Where(t => t.Id == 1).WithRowLock(Lock), (db, t) => t.Hits++, "SELECT \"Hits\" FROM tickets WHERE \"Id\" = 1", "tickets"),

        Refused("Include of a collection, AsSingleQuery() (LEFT JOIN)", db => db.Accounts.Include(a => a.Entries).AsSingleQuery().Where(a => a.Id == 1).WithRowLock(Lock), "AsSplitQuery()"),
        Refused("Include of an optional reference (LEFT JOIN)", db => db.Accounts.Include(a => a.Manager).Where(a => a.Id == 1).WithRowLock(Lock), "its own query"),
        Refused("owned many in its own table, AsSingleQuery()", db => db.Crates.AsSingleQuery().Where(c => c.Id == 1).WithRowLock(Lock), "AsSplitQuery()"),
        Refused("owned one in a table of its own (LEFT JOIN)", db => db.Pallets.Where(p => p.Id == 1).WithRowLock(Lock), "ToJson()"),
        Refused("table splitting, optional dependent (LEFT JOIN)", db => db.Bikes.Include(b => b.Bell).Where(b => b.Id == 1).WithRowLock(Lock), "IsRequired()"),
        Refused("TPT base set", db => db.Animals.Where(a => a.Id == 1).WithRowLock(Lock), "db.Set<Dog>()"),
        Refused("TPT OfType<Dog>()", db => db.Animals.OfType<Dog>().Where(a => a.Id == 1).WithRowLock(Lock), "db.Set<Dog>()"),
        Refused("TPC base set (UNION ALL)", db => db.Figures.Where(f => f.Id == 1).WithRowLock(Lock), "concrete set"),
        Refused("queryable (table-valued) function", db => db.TicketsFn().Where(t => t.Id == 1).WithRowLock(Lock), "tickets_fn()"),
        Refused("entity mapped to a view (ToView)", db => db.TicketViews.Where(t => t.Id == 1).WithRowLock(Lock), "view"),
        Refused("FromSql over a table", db => db.Tickets.FromSql($"SELECT * FROM tickets").Where(t => t.Id == 1).WithRowLock(Lock), "FromSql"),
        Refused("FromSql over a view", db => db.Tickets.FromSqlRaw("SELECT *, false AS \"Deleted\" FROM ticket_view").Where(t => t.Id == 1).WithRowLock(Lock), "FromSql"),
        Refused("FromSql over a function", db => db.Tickets.FromSql($"SELECT * FROM tickets_fn()").Where(t => t.Id == 1).WithRowLock(Lock), "FromSql"),
        Refused("FromSql over a WITH query", db => db.Tickets.FromSql($"WITH t AS (SELECT * FROM tickets) SELECT * FROM t").Where(t => t.Id == 1).WithRowLock(Lock), "FromSql"),
        Refused("FromSql not composed", db => db.Tickets.FromSql($"SELECT * FROM tickets").WithRowLock(Lock), "FromSql"),
        Refused("projection reading a sub-query", db => db.Accounts.Where(a => a.Id == 1).Select(a => new { a.Id, Sum = a.Entries.Sum(e => e.Amount) }).WithRowLock(Lock), "sub-query"),
        Refused("projection of a reference through a LEFT JOIN", db => db.Accounts.Where(a => a.Id == 1).Select(a => new { a.Id, a.Manager!.Points }).WithRowLock(Lock), "LEFT JOIN"),
        Refused("GroupBy", db => db.Accounts.WithRowLock(Lock).GroupBy(a => a.ManagerId).Select(g => new { g.Key, N = g.Count() }), "GROUP BY"),
    ];

    public static TheoryData<string> AcceptedShapes => [.. Corpus.Where(s => s.RefusalHint is null).Select(s => s.Name)];

    public static TheoryData<string> RefusedShapes => [.. Corpus.Where(s => s.RefusalHint is not null).Select(s => s.Name)];

    [Theory]
    [MemberData(nameof(AcceptedShapes))]
    public async Task An_accepted_shape_loses_no_concurrent_increment(string name)
    {
        var shape = Corpus.Single(s => s.Name == name);
        var before = await oracle.Database.ScalarAsync<int>(shape.CounterSql);

        await RowLock.Tests.Infrastructure.Workers.RaceAsync(Workers, async _ =>
        {
            for (var i = 0; i < Increments; i++)
            {
                await using var db = oracle.CreateContext();
                await using var tx = await db.Database.BeginTransactionAsync();
                var read = await shape.Read(db);
                shape.Increment(db, read);
                await db.SaveChangesAsync();
                await tx.CommitAsync();
            }
        });

        Assert.Equal(before + (Workers * Increments), await oracle.Database.ScalarAsync<int>(shape.CounterSql));
    }

    [Theory]
    [MemberData(nameof(AcceptedShapes))]
    public async Task An_accepted_shape_holds_every_table_row_it_returned_locked(string name)
    {
        var shape = Corpus.Single(s => s.Name == name);
        await using var db = oracle.CreateContext();
        await using (var tx = await db.Database.BeginTransactionAsync())
        {
            await shape.Read(db);
            foreach (var (table, where) in shape.Rows)
            {
                Assert.True(await oracle.IsLockedAsync(table, where), $"{name}: {table} where {where} is not locked.");
            }
        }

        foreach (var (table, where) in shape.Rows)
        {
            Assert.False(await oracle.IsLockedAsync(table, where));
        }
    }

    [Theory]
    [MemberData(nameof(RefusedShapes))]
    public async Task A_refused_shape_is_refused_before_anything_is_sent(string name)
    {
        var shape = Corpus.Single(s => s.Name == name);
        await using var db = oracle.CreateContext();
        await using var tx = await db.Database.BeginTransactionAsync();
        var sent = oracle.Commands.Count;

        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => shape.Read(db));

        Assert.Equal(sent, oracle.Commands.Count);
        Assert.Contains(shape.RefusalHint!, e.Message, StringComparison.Ordinal);
        Assert.Empty(db.ChangeTracker.Entries());
        Assert.Equal(1, await db.Database.SqlQueryRaw<int>("SELECT 1 AS \"Value\"").SingleAsync()); // the transaction is not aborted
    }

    [Fact]
    public void The_corpus_names_are_unique_and_cover_both_verdicts()
    {
        Assert.Equal(Corpus.Count, Corpus.Select(s => s.Name).Distinct().Count());
        Assert.True(AcceptedShapes.Count >= 20);
        Assert.True(RefusedShapes.Count >= 10);
    }

    private static LockShape Exact<T>(string name, Func<OracleContext, IQueryable<T>> query, Action<OracleContext, T> increment, string counterSql, params string[] rows) =>
        Exact(name, async db => (await query(db).ToListAsync()).First(), increment, counterSql, rows);

    private static LockShape Exact<T>(string name, Func<OracleContext, Task<T>> read, Action<OracleContext, T> increment, string counterSql, params string[] rows) =>
        new(name, async db => (await read(db))!, (db, o) => increment(db, (T)o), counterSql, [.. rows.Select(Row)], null);

    private static LockShape Refused<T>(string name, Func<OracleContext, IQueryable<T>> query, string hint) =>
        new(name, async db => (await query(db).ToListAsync())!, (_, _) => { }, "", [], hint);

    private static (string Table, string Where) Row(string row) =>
        row.Split(':', 2) is [var table, var where] ? (table, where) : (row, "\"Id\" = 1");

    /// <summary>Reads the rows without a lock first, so the context tracks them before the locking read.</summary>
    private static IQueryable<T> Tracked<T>(OracleContext db, IQueryable<T> query)
    {
        _ = query.ToList();
        return query;
    }

    private static void SetBalance(OracleContext db, int balance)
    {
        var stub = db.Accounts.Local.FirstOrDefault(a => a.Id == 1) ?? db.Accounts.Attach(new Account { Id = 1 }).Entity;
        stub.Balance = balance;
        db.Entry(stub).Property(a => a.Balance).IsModified = true;
    }
}

/// <summary>One shape of the corpus: how to read (lock) its row, how to increment what was read, the counter, the rows to find locked; or the refusal expected.</summary>
public sealed record LockShape(
    string Name,
    Func<OracleContext, Task<object>> Read,
    Action<OracleContext, object> Increment,
    string CounterSql,
    IReadOnlyList<(string Table, string Where)> Rows,
    string? RefusalHint)
{
    public override string ToString() => Name;
}
