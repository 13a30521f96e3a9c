using Microsoft.EntityFrameworkCore;
using RowLock.EntityFrameworkCore.Tests.Infrastructure;
using RowLock.Tests.Infrastructure;

namespace RowLock.EntityFrameworkCore.Tests;

/// <summary>The lab's seed scenarios, written the way an EF Core team writes them, with real concurrent workers.</summary>
public sealed class ScenarioTests(EfFixture ef) : IClassFixture<EfFixture>
{
    private DbContextTransactionRunner<ShopContext> Runner => new(ef.Factory);

    [Fact]
    public async Task Hot_record_16_workers_incrementing_one_counter_lose_no_update()
    {
        await ef.Database.ExecuteAsync("DELETE FROM counters; INSERT INTO counters VALUES (1, 0)");
        var runner = Runner;

        await Workers.RaceAsync(16, _ => runner.RunAsync(async (db, ct) =>
        {
            var counter = await db.Counters.Where(c => c.Id == 1).WithRowLock(RowLockClause.ForUpdate).SingleAsync(ct);
            counter.Value++;
        }));

        Assert.Equal(16, await ef.Database.ScalarAsync<int>("SELECT \"Value\" FROM counters WHERE \"Id\" = 1"));
    }

    [Fact]
    public async Task Fifo_stock_five_sales_of_100_from_300_three_succeed_two_are_short_and_no_layer_goes_negative()
    {
        await ef.Database.ExecuteAsync("""
            DELETE FROM cost_layers;
            INSERT INTO cost_layers ("Created", "RemainingQty") VALUES (now() - interval '3 days', 100), (now() - interval '2 days', 100), (now() - interval '1 day', 100);
            """);
        var runner = Runner;

        var sales = await Workers.RaceAsync(5, _ => runner.RunAsync(async (db, ct) =>
        {
            // One order for everybody (oldest first): sales queue on the first layer, never deadlock.
            var layers = await db.CostLayers.Where(l => l.RemainingQty > 0).OrderBy(l => l.Created).ThenBy(l => l.Id)
                .WithRowLock(RowLockClause.ForUpdate).ToListAsync(ct);
            if (layers.Sum(l => l.RemainingQty) < 100)
            {
                return false;
            }

            var wanted = 100;
            foreach (var layer in layers)
            {
                var take = Math.Min(wanted, layer.RemainingQty);
                layer.RemainingQty -= take;
                wanted -= take;
                if (wanted == 0)
                {
                    break;
                }
            }

            return true;
        }));

        Assert.Equal(3, sales.Count(s => s));
        Assert.Equal(2, sales.Count(s => !s));
        Assert.Equal(0, await ef.Database.ScalarAsync<long>("SELECT count(*) FROM cost_layers WHERE \"RemainingQty\" < 0"));
        Assert.Equal(0, await ef.Database.ScalarAsync<long>("SELECT sum(\"RemainingQty\") FROM cost_layers"));
    }

    [Fact]
    public async Task Cron_batch_four_workers_claiming_with_skip_locked_post_every_invoice_exactly_once()
    {
        await ef.Database.ExecuteAsync("DELETE FROM invoices; INSERT INTO invoices (\"Id\", \"State\", \"Posts\") SELECT g, 'draft', 0 FROM generate_series(1, 300) g");
        var runner = Runner;

        var claimed = await Workers.RaceAsync(4, async _ =>
        {
            var mine = new List<long>();
            while (true)
            {
                var batch = await runner.RunAsync(async (db, ct) =>
                {
                    var invoices = await db.Invoices.Where(i => i.State == "draft").OrderBy(i => i.Id).ClaimRowsAsync(25, ct);
                    foreach (var invoice in invoices)
                    {
                        invoice.State = "posted";
                        invoice.Posts++;
                    }

                    return invoices.Select(i => i.Id).ToList();
                });
                if (batch.Count == 0)
                {
                    return mine;
                }

                mine.AddRange(batch);
            }
        });

        var all = claimed.SelectMany(c => c).ToList();
        Assert.Equal(300, all.Count);
        Assert.Equal(300, all.Distinct().Count()); // no invoice claimed by two workers
        Assert.Equal(300, await ef.Database.ScalarAsync<long>("SELECT count(*) FROM invoices WHERE \"Posts\" = 1 AND \"State\" = 'posted'"));
    }

    [Fact]
    public async Task Edit_conflict_with_NoWait_the_others_get_the_UI_message_at_once_and_the_editors_edit_stays()
    {
        await ef.Database.ExecuteAsync("DELETE FROM documents; INSERT INTO documents VALUES (1, 'draft')");

        await using var editor = ef.CreateContext();
        await using var editing = await editor.Database.BeginTransactionAsync();
        var document = await editor.Documents.Where(d => d.Id == 1).WithRowLock(RowLockClause.ForUpdate.NoWait()).SingleAsync();

        var messages = await Workers.RaceAsync(3, async user =>
        {
            await using var db = ef.CreateContext();
            await using var tx = await db.Database.BeginTransactionAsync();
            var e = await Assert.ThrowsAsync<LockNotAvailableException>(() =>
                db.Documents.Where(d => d.Id == 1).WithRowLock(RowLockClause.ForUpdate.NoWait()).SingleAsync());
            Assert.Equal(1, await db.Database.SqlQueryRaw<int>("SELECT 1 AS \"Value\"").SingleAsync()); // the transaction goes on
            return e.UserMessage;
        });

        Assert.All(messages, m => Assert.Equal("This record is being modified by someone else; try again in a moment.", m));
        document.Body = "edited by the editor";
        await editor.SaveChangesAsync();
        await editing.CommitAsync();
        Assert.Equal("edited by the editor", await ef.Database.ScalarAsync<string>("SELECT \"Body\" FROM documents WHERE \"Id\" = 1"));
    }
}
