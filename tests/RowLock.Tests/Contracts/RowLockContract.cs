using Dapper;
using Npgsql;
using RowLock.Tests.Infrastructure;

namespace RowLock.Tests.Contracts;

/// <summary>
/// What the row-lock helpers promise, proven with several connections racing on the same rows through one endpoint:
/// no lost update under FOR UPDATE, NOWAIT fails fast and leaves the transaction usable, SKIP LOCKED hands each job to
/// one worker, a lock timeout never outlives its statement, locking by key never deadlocks, identifiers are quoted.
/// Tables are created and the outcome read on direct connections (<see cref="ContractEndpoint.Database"/>).
/// </summary>
public abstract class RowLockContract<TEndpoint>(TEndpoint endpoint) : Contract<TEndpoint>(endpoint)
    where TEndpoint : ContractEndpoint, IEndpointAvailability
{
    [ContractFact]
    public async Task Sixteen_workers_incrementing_a_locked_hot_row_lose_no_update()
    {
        var table = await Db.CreateHotRowTableAsync("hot");
        await Workers.RaceAsync(16, async _ =>
        {
            for (var i = 0; i < 50; i++)
            {
                await using var connection = await DataSource.OpenConnectionAsync();
                await using var tx = await connection.BeginTransactionAsync();
                var rows = await tx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = @id", new { id = 1 }, RowLockClause.ForUpdate);
                await connection.ExecuteAsync($"UPDATE {table} SET v = @v WHERE id = 1", new { v = rows[0] + 1 }, tx);
                await tx.CommitAsync();
            }
        });

        Assert.Equal(16 * 50, await Db.ScalarAsync<int>($"SELECT v FROM {table}"));
    }

    [ContractFact]
    public async Task Without_the_lock_the_same_read_modify_write_loses_updates()
    {
        // Both workers read before either writes (a barrier forces the interleaving that happens under load).
        var table = await Db.CreateHotRowTableAsync("hot");
        var bothRead = new AsyncBarrier(2);
        await Workers.RaceAsync(2, async _ =>
        {
            await using var connection = await DataSource.OpenConnectionAsync();
            await using var tx = await connection.BeginTransactionAsync();
            var v = await connection.QuerySingleAsync<int>($"SELECT v FROM {table} WHERE id = 1", transaction: tx);
            await bothRead.SignalAndWaitAsync();
            await connection.ExecuteAsync($"UPDATE {table} SET v = @v WHERE id = 1", new { v = v + 1 }, tx);
            await tx.CommitAsync();
        });

        Assert.Equal(1, await Db.ScalarAsync<int>($"SELECT v FROM {table}"));
    }

    [ContractFact]
    public async Task Five_workers_consuming_fifo_layers_never_oversell()
    {
        var layers = TestTables.Unique("layers");
        await Db.ExecuteAsync($"""
            CREATE TABLE {layers} (id bigserial PRIMARY KEY, product text NOT NULL, created timestamptz NOT NULL, remaining_qty int NOT NULL);
            INSERT INTO {layers} (product, created, remaining_qty) VALUES
              ('widget', now() - interval '3 days', 100), ('widget', now() - interval '2 days', 100), ('widget', now() - interval '1 day', 100);
            """);

        var results = await Workers.RaceAsync(5, async _ =>
        {
            await using var connection = await DataSource.OpenConnectionAsync();
            await using var tx = await connection.BeginTransactionAsync();
            var locked = await tx.LockRowsAsync<Layer>(
                $"SELECT id, remaining_qty AS RemainingQty FROM {layers} WHERE product = @product AND remaining_qty > 0 ORDER BY created, id",
                new { product = "widget" }, RowLockClause.ForUpdate);
            if (locked.Sum(l => l.RemainingQty) < 100)
            {
                await tx.RollbackAsync();
                return "shortage";
            }

            var wanted = 100;
            foreach (var layer in locked)
            {
                var take = Math.Min(wanted, layer.RemainingQty);
                await connection.ExecuteAsync($"UPDATE {layers} SET remaining_qty = remaining_qty - @take WHERE id = @id", new { take, id = layer.Id }, tx);
                wanted -= take;
                if (wanted == 0)
                {
                    break;
                }
            }

            await tx.CommitAsync();
            return "consumed";
        });

        Assert.Equal(3, results.Count(r => r == "consumed"));
        Assert.Equal(2, results.Count(r => r == "shortage"));
        Assert.Equal(0, await Db.ScalarAsync<int>($"SELECT count(*) FROM {layers} WHERE remaining_qty < 0"));
        Assert.Equal(300 - (3 * 100), await Db.ScalarAsync<long>($"SELECT sum(remaining_qty) FROM {layers}"));
    }

    [ContractFact]
    public async Task Nowait_fails_at_once_with_a_typed_exception_and_the_transaction_goes_on()
    {
        var table = await Db.CreateHotRowTableAsync("hot");
        await using var holder = await DataSource.OpenConnectionAsync();
        await using var holderTx = await holder.BeginTransactionAsync();
        await holderTx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate);

        await using var editor = await DataSource.OpenConnectionAsync();
        await using var editorTx = await editor.BeginTransactionAsync();
        await editor.ExecuteAsync($"INSERT INTO {table} VALUES (2, 0)", transaction: editorTx);
        var error = await Assert.ThrowsAsync<LockNotAvailableException>(() =>
            editorTx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate.NoWait()));

        Assert.Equal("This record is being modified by someone else; try again in a moment.", error.UserMessage);
        Assert.StartsWith("55P03 lock_not_available: FOR UPDATE NOWAIT could not lock a row", error.Message, StringComparison.Ordinal);
        Assert.True(error.IsTransient);
        Assert.Equal(PostgresErrorCodes.LockNotAvailable, error.SqlState);
        Assert.Equal(PostgresErrorCodes.LockNotAvailable, error.PostgresException?.SqlState);

        // The editor's transaction survived the failed lock: earlier work is kept and later statements run.
        Assert.Equal(1, await editor.ExecuteScalarAsync<int>("SELECT 1", transaction: editorTx));
        await editorTx.CommitAsync();
        Assert.Equal(2, await Db.ScalarAsync<long>($"SELECT count(*) FROM {table}"));
    }

    [ContractFact]
    public async Task Nowait_on_a_free_row_locks_it()
    {
        var table = await Db.CreateHotRowTableAsync("hot");
        await using var connection = await DataSource.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        var rows = await tx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate.NoWait());
        Assert.Equal([0], rows);

        await using var other = await DataSource.OpenConnectionAsync();
        await using var otherTx = await other.BeginTransactionAsync();
        await Assert.ThrowsAsync<LockNotAvailableException>(() =>
            otherTx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate.NoWait()));
    }

    [ContractFact]
    public async Task A_lock_timeout_fails_the_waiter_and_does_not_leak_into_later_statements()
    {
        var table = await Db.CreateHotRowTableAsync("hot");
        await using var holder = await DataSource.OpenConnectionAsync();
        await using var holderTx = await holder.BeginTransactionAsync();
        await holderTx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate);

        await using var waiter = await DataSource.OpenConnectionAsync();
        await using var waiterTx = await waiter.BeginTransactionAsync();
        await waiter.ExecuteAsync("SET LOCAL lock_timeout = '7s'", transaction: waiterTx);
        var error = await Assert.ThrowsAsync<LockNotAvailableException>(() =>
            waiterTx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate.WithTimeout(TimeSpan.FromMilliseconds(200))));
        Assert.Equal(PostgresErrorCodes.LockNotAvailable, error.SqlState);
        Assert.Equal("7s", await waiter.ExecuteScalarAsync<string>("SHOW lock_timeout", transaction: waiterTx));

        // After the holder is gone, a timed lock succeeds and still leaves the caller's setting in place.
        await holderTx.RollbackAsync();
        var rows = await waiterTx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate.WithTimeout(TimeSpan.FromMilliseconds(200)));
        Assert.Equal([0], rows);
        Assert.Equal("7s", await waiter.ExecuteScalarAsync<string>("SHOW lock_timeout", transaction: waiterTx));
        await waiterTx.CommitAsync();
        Assert.Equal("0", await waiter.ExecuteScalarAsync<string>("SHOW lock_timeout"));
    }

    [ContractFact]
    public async Task A_timed_out_lock_leaves_no_lock_timeout_behind_for_the_next_client()
    {
        var table = await Db.CreateHotRowTableAsync("timeout");
        await using var holder = await Db.DataSource.OpenConnectionAsync(); // direct, so it does not take a pooler's server connection
        await using var holderTx = await holder.BeginTransactionAsync();
        await holderTx.LockRowsAsync<int>($"SELECT id FROM {table}", null, RowLockClause.ForUpdate);

        for (var i = 0; i < 8; i++)
        {
            await using var connection = await DataSource.OpenConnectionAsync();
            await using var tx = await connection.BeginTransactionAsync();
            await Assert.ThrowsAsync<LockNotAvailableException>(() =>
                tx.LockRowsAsync<int>($"SELECT id FROM {table}", null, RowLockClause.ForUpdate.WithTimeout(TimeSpan.FromMilliseconds(50))));
            await tx.CommitAsync();
        }

        // Whichever server connection the next clients get, none carries the 50 ms.
        var seen = await Workers.RaceAsync(12, async _ =>
        {
            await using var connection = await DataSource.OpenConnectionAsync();
            return await connection.ExecuteScalarAsync<string>("SELECT current_setting('lock_timeout') FROM pg_sleep(0.02)");
        });
        Assert.All(seen, s => Assert.Equal("0", s));
    }

    [ContractFact]
    public async Task Four_workers_claiming_with_skip_locked_take_every_job_exactly_once()
    {
        var jobs = TestTables.Unique("jobs");
        await Db.ExecuteAsync($"""
            CREATE TABLE {jobs} (id bigint PRIMARY KEY, claims int NOT NULL DEFAULT 0, done_by int);
            INSERT INTO {jobs} (id) SELECT g FROM generate_series(1, 1000) g;
            """);

        var perWorker = await Workers.RaceAsync(4, async worker =>
        {
            var mine = 0;
            while (true)
            {
                await using var connection = await DataSource.OpenConnectionAsync();
                await using var tx = await connection.BeginTransactionAsync();
                var ids = await tx.ClaimRowsAsync<long>($"SELECT id FROM {jobs} WHERE done_by IS NULL ORDER BY id", null, 10);
                if (ids.Count == 0)
                {
                    return mine;
                }

                await connection.ExecuteAsync($"UPDATE {jobs} SET claims = claims + 1, done_by = @worker WHERE id = ANY(@ids)", new { worker, ids = ids.ToArray() }, tx);
                await tx.CommitAsync();
                mine += ids.Count;
            }
        });

        Assert.Equal(1000, perWorker.Sum());
        Assert.Equal(0, await Db.ScalarAsync<long>($"SELECT count(*) FROM {jobs} WHERE claims <> 1 OR done_by IS NULL"));
    }

    [ContractFact]
    public async Task Without_skip_locked_two_workers_take_the_same_jobs()
    {
        var jobs = TestTables.Unique("naive_jobs");
        await Db.ExecuteAsync($"""
            CREATE TABLE {jobs} (id bigint PRIMARY KEY, claims int NOT NULL DEFAULT 0);
            INSERT INTO {jobs} (id) SELECT g FROM generate_series(1, 20) g;
            """);
        var bothRead = new AsyncBarrier(2);
        await Workers.RaceAsync(2, async _ =>
        {
            await using var connection = await DataSource.OpenConnectionAsync();
            await using var tx = await connection.BeginTransactionAsync();
            var ids = (await connection.QueryAsync<long>($"SELECT id FROM {jobs} WHERE claims = 0 ORDER BY id LIMIT 10", transaction: tx)).ToArray();
            await bothRead.SignalAndWaitAsync();
            await connection.ExecuteAsync($"UPDATE {jobs} SET claims = claims + 1 WHERE id = ANY(@ids)", new { ids }, tx);
            await tx.CommitAsync();
        });

        Assert.Equal(10, await Db.ScalarAsync<long>($"SELECT count(*) FROM {jobs} WHERE claims = 2"));
    }

    [ContractFact]
    public async Task Every_clause_works()
    {
        var table = TestTables.Unique("clauses");
        await Db.ExecuteAsync($"CREATE TABLE {table} (id int PRIMARY KEY, v int NOT NULL); INSERT INTO {table} SELECT g, g FROM generate_series(1, 3) g;");
        RowLockClause[] strengths = [RowLockClause.ForUpdate, RowLockClause.ForNoKeyUpdate, RowLockClause.ForShare, RowLockClause.ForKeyShare];
        foreach (var strength in strengths)
        {
            foreach (var clause in new[] { strength, strength.NoWait(), strength.SkipLocked(), strength.WithTimeout(TimeSpan.FromSeconds(1)), strength.Of(table) })
            {
                await using var connection = await DataSource.OpenConnectionAsync();
                await using var tx = await connection.BeginTransactionAsync();
                Assert.Equal(3, (await tx.LockRowsAsync<int>($"SELECT v FROM {table} ORDER BY id", null, clause)).Count);
                Assert.Single(await tx.LockRowsByKeyAsync<int, int>(table, "id", [2], clause));
                await tx.CommitAsync();
            }
        }
    }

    [ContractFact]
    public async Task Key_share_lets_no_key_update_through_but_blocks_delete()
    {
        var table = await Db.CreateHotRowTableAsync("hot");
        await using var holder = await DataSource.OpenConnectionAsync();
        await using var holderTx = await holder.BeginTransactionAsync();
        await holderTx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForKeyShare);

        await using var other = await DataSource.OpenConnectionAsync();
        await using var otherTx = await other.BeginTransactionAsync();
        var rows = await otherTx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForNoKeyUpdate.NoWait());
        Assert.Single(rows);
        await otherTx.RollbackAsync();

        await using var deleterTx = await other.BeginTransactionAsync();
        await other.ExecuteAsync("SET LOCAL lock_timeout = '100ms'", transaction: deleterTx);
        var error = await Assert.ThrowsAsync<PostgresException>(() => other.ExecuteAsync($"DELETE FROM {table} WHERE id = 1", transaction: deleterTx));
        Assert.Equal(PostgresErrorCodes.LockNotAvailable, error.SqlState);
    }

    [ContractFact]
    public async Task Share_blocks_for_update_and_other_shares_coexist()
    {
        var table = await Db.CreateHotRowTableAsync("hot");
        await using var holder = await DataSource.OpenConnectionAsync();
        await using var holderTx = await holder.BeginTransactionAsync();
        await holderTx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForShare);

        await using var other = await DataSource.OpenConnectionAsync();
        await using var otherTx = await other.BeginTransactionAsync();
        Assert.Single(await otherTx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForShare.NoWait()));
        await Assert.ThrowsAsync<LockNotAvailableException>(() =>
            otherTx.LockRowsAsync<int>($"SELECT v FROM {table} WHERE id = 1", null, RowLockClause.ForUpdate.NoWait()));
    }

    [ContractFact]
    public async Task Of_locks_only_the_named_tables_rows_in_a_join()
    {
        var (orders, customers, links) = (TestTables.Unique("orders"), TestTables.Unique("customers"), TestTables.Unique("order_customer"));
        await Db.ExecuteAsync($"""
            CREATE TABLE {orders} (id int PRIMARY KEY, total int NOT NULL);
            CREATE TABLE {customers} (id int PRIMARY KEY, name text NOT NULL);
            CREATE TABLE {links} (order_id int, customer_id int);
            INSERT INTO {orders} VALUES (1, 10); INSERT INTO {customers} VALUES (7, 'ann'); INSERT INTO {links} VALUES (1, 7);
            """);
        await using var holder = await DataSource.OpenConnectionAsync();
        await using var holderTx = await holder.BeginTransactionAsync();
        await holderTx.LockRowsAsync<int>(
            $"SELECT o.total FROM {orders} o JOIN {links} oc ON oc.order_id = o.id JOIN {customers} c ON c.id = oc.customer_id",
            null, RowLockClause.ForUpdate.Of("o"));

        await using var other = await DataSource.OpenConnectionAsync();
        await using var otherTx = await other.BeginTransactionAsync();
        Assert.Single(await otherTx.LockRowsAsync<string>($"SELECT name FROM {customers} WHERE id = 7", null, RowLockClause.ForUpdate.NoWait()));
        await Assert.ThrowsAsync<LockNotAvailableException>(() =>
            otherTx.LockRowsAsync<int>($"SELECT total FROM {orders} WHERE id = 1", null, RowLockClause.ForUpdate.NoWait()));
    }

    [ContractFact]
    public async Task Locking_by_key_sorts_the_keys_so_opposite_orders_never_deadlock()
    {
        var accounts = TestTables.Unique("accounts");
        await Db.ExecuteAsync($"CREATE TABLE {accounts} (id int PRIMARY KEY, balance numeric NOT NULL); INSERT INTO {accounts} VALUES (1, 100), (2, 100);");
        await Workers.RaceAsync(2, async worker =>
        {
            for (var i = 0; i < 30; i++)
            {
                int[] keys = worker == 0 ? [1, 2] : [2, 1];
                await using var connection = await DataSource.OpenConnectionAsync();
                await using var tx = await connection.BeginTransactionAsync();
                var locked = await tx.LockRowsByKeyAsync<Account, int>(accounts, "id", keys, RowLockClause.ForUpdate);
                Assert.Equal([1, 2], locked.Select(a => a.Id));
                var (from, to) = worker == 0 ? (1, 2) : (2, 1);
                await connection.ExecuteAsync($"UPDATE {accounts} SET balance = balance - 1 WHERE id = @from; UPDATE {accounts} SET balance = balance + 1 WHERE id = @to", new { from, to }, tx);
                await tx.CommitAsync();
            }
        });

        Assert.Equal(200m, await Db.ScalarAsync<decimal>($"SELECT sum(balance) FROM {accounts}"));
    }

    [ContractFact]
    public async Task Locking_in_opposite_orders_by_hand_deadlocks()
    {
        var accounts = TestTables.Unique("hand_accounts");
        await Db.ExecuteAsync($"CREATE TABLE {accounts} (id int PRIMARY KEY, balance numeric NOT NULL); INSERT INTO {accounts} VALUES (1, 100), (2, 100);");
        var firstLocked = new AsyncBarrier(2);
        var outcomes = await Workers.RaceAsync(2, async worker =>
        {
            var (first, second) = worker == 0 ? (1, 2) : (2, 1);
            await using var connection = await DataSource.OpenConnectionAsync();
            await using var tx = await connection.BeginTransactionAsync();
            await connection.ExecuteAsync($"SELECT 1 FROM {accounts} WHERE id = @first FOR UPDATE", new { first }, tx);
            await firstLocked.SignalAndWaitAsync();
            try
            {
                await connection.ExecuteAsync($"SELECT 1 FROM {accounts} WHERE id = @second FOR UPDATE", new { second }, tx);
                await tx.CommitAsync();
                return "ok";
            }
            catch (PostgresException e)
            {
                return e.SqlState;
            }
        });

        Assert.Contains(PostgresErrorCodes.DeadlockDetected, outcomes);
    }

    [ContractFact]
    public async Task Hostile_identifiers_are_quoted_and_cannot_change_the_statement()
    {
        var victims = TestTables.Unique("victims");
        var weird = $"we\"ird; --{TestTables.Unique("name")}";
        var quotedWeird = "\"" + weird.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
        await Db.ExecuteAsync($"CREATE TABLE {victims} (id int PRIMARY KEY); INSERT INTO {victims} VALUES (1);");
        await Db.ExecuteAsync($"CREATE TABLE {quotedWeird} (\"k/*\" int PRIMARY KEY, v int); INSERT INTO {quotedWeird} VALUES (1, 5);");
        await using var connection = await DataSource.OpenConnectionAsync();

        await using (var tx = await connection.BeginTransactionAsync())
        {
            var error = await Assert.ThrowsAsync<PostgresException>(() =>
                tx.LockRowsByKeyAsync<int, int>($"{victims}\"; DROP TABLE {victims}; --", "id", [1], RowLockClause.ForUpdate));
            Assert.Equal(PostgresErrorCodes.UndefinedTable, error.SqlState);
        }

        await using (var tx = await connection.BeginTransactionAsync())
        {
            var rows = await tx.LockRowsByKeyAsync<dynamic, int>(weird, "k/*", [1], RowLockClause.ForUpdate.NoWait());
            Assert.Single(rows);
            await tx.CommitAsync();
        }

        Assert.Equal(1, await Db.ScalarAsync<long>($"SELECT count(*) FROM {victims}"));
    }
}
