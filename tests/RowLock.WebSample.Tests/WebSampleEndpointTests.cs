using System.Net;
using System.Net.Http.Json;
using Dapper;
using RowLock.Tests.Infrastructure;

namespace RowLock.WebSample.Tests;

/// <summary>
/// The web sample's endpoints under 16 concurrent requests each, against real PostgreSQL: the results are exact, as a team
/// copying the sample would expect them to be.
/// </summary>
public sealed class WebSampleEndpointTests(WebSampleApp app) : IClassFixture<WebSampleApp>
{
    private const int Requests = 16;

    private HttpClient Client => app.Client;

    private DatabaseFixture Database => app.Database;

    [Fact]
    public async Task Sixteen_concurrent_sales_of_the_last_ten_units_sell_exactly_ten_and_refuse_six()
    {
        await Database.ExecuteAsync("INSERT INTO stock VALUES (2, 'last ten', 10)");

        var responses = await Task.WhenAll(Enumerable.Range(0, Requests).Select(_ =>
            Client.PostAsJsonAsync("/stock/2/sell", new { quantity = 1 })));

        Assert.Equal(10, responses.Count(r => r.StatusCode == HttpStatusCode.OK));
        Assert.Equal(6, responses.Count(r => r.StatusCode == HttpStatusCode.Conflict));
        Assert.Equal(0, await Database.ScalarAsync<int>("SELECT qty FROM stock WHERE id = 2"));
        var remaining = await Task.WhenAll(responses.Where(r => r.IsSuccessStatusCode)
            .Select(r => r.Content.ReadFromJsonAsync<StockEndpoints.StockLevel>()));
        Assert.Equal(Enumerable.Range(0, 10), remaining.Select(level => level!.Qty).Order());
    }

    [Fact]
    public async Task Sixteen_concurrent_claimers_take_every_job_exactly_once()
    {
        const int jobs = 48;
        await Database.ExecuteAsync("DELETE FROM jobs"); // the sample's demo jobs
        await Database.ExecuteAsync("INSERT INTO jobs (payload) SELECT 'job ' || n FROM generate_series(1, @jobs) AS n", new { jobs });

        var perWorker = await Task.WhenAll(Enumerable.Range(0, Requests).Select(async worker =>
        {
            var mine = new List<long>();
            while (true)
            {
                var claimed = await Client.PostAsync($"/jobs/claim?limit=2&worker=w{worker}", null);
                claimed.EnsureSuccessStatusCode();
                var batch = await claimed.Content.ReadFromJsonAsync<List<JobEndpoints.Job>>();
                if (batch!.Count == 0)
                {
                    return mine;
                }

                mine.AddRange(batch.Select(job => job.Id));
            }
        }));

        var all = perWorker.SelectMany(ids => ids).ToList();
        Assert.Equal(jobs, all.Count);
        Assert.Equal(jobs, all.Distinct().Count());
        Assert.Equal(jobs, await Database.ScalarAsync<long>("SELECT count(*) FROM jobs WHERE done_at IS NOT NULL"));
        // Every job is marked done by the worker that was handed it.
        await using var connection = await Database.DataSource.OpenConnectionAsync();
        var doneBy = (await connection.QueryAsync<(long Id, string DoneBy)>("SELECT id, done_by FROM jobs")).ToDictionary(r => r.Id, r => r.DoneBy);
        for (var worker = 0; worker < Requests; worker++)
        {
            Assert.All(perWorker[worker], id => Assert.Equal($"w{worker}", doneBy[id]));
        }
    }

    [Fact]
    public async Task Sixteen_concurrent_ef_additions_to_one_order_lose_none()
    {
        await Database.ExecuteAsync("INSERT INTO orders VALUES (2, 0, 0)");

        var responses = await Task.WhenAll(Enumerable.Range(0, Requests).Select(_ =>
            Client.PostAsJsonAsync("/orders/2/lines", new { amount = 2.50m })));

        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        var totals = await Client.GetFromJsonAsync<OrderEndpoints.OrderTotals>("/orders/2");
        Assert.Equal(new OrderEndpoints.OrderTotals(2, 40.00m, Requests), totals);
    }

    [Fact]
    public async Task A_nowait_edit_of_a_document_being_saved_gets_409_at_once_and_changes_nothing()
    {
        await Database.ExecuteAsync("INSERT INTO documents VALUES (2, 'draft', 0)");
        await using (var holder = await Database.DataSource.OpenConnectionAsync())
        await using (var saving = await holder.BeginTransactionAsync())
        {
            await holder.ExecuteAsync("SELECT 1 FROM documents WHERE id = 2 FOR UPDATE", transaction: saving);

            var blocked = await Task.WhenAll(Enumerable.Range(0, Requests).Select(n =>
                Client.PutAsJsonAsync("/documents/2", new { body = $"edit {n}" })));

            Assert.All(blocked, r => Assert.Equal(HttpStatusCode.Conflict, r.StatusCode));
            var problem = await blocked[0].Content.ReadAsStringAsync();
            Assert.Contains(LockNotAvailableException.RowMessage, problem, StringComparison.Ordinal);
        }

        Assert.Equal(0, await Database.ScalarAsync<int>("SELECT version FROM documents WHERE id = 2"));

        // Without an outside holder the editors race each other: each one either saves (200) or is told at once (409).
        var raced = await Task.WhenAll(Enumerable.Range(0, Requests).Select(n =>
            Client.PutAsJsonAsync("/documents/2", new { body = $"edit {n}" })));
        Assert.All(raced, r => Assert.Contains(r.StatusCode, new[] { HttpStatusCode.OK, HttpStatusCode.Conflict }));
        var saved = raced.Count(r => r.StatusCode == HttpStatusCode.OK);
        Assert.True(saved >= 1);
        Assert.Equal(saved, await Database.ScalarAsync<int>("SELECT version FROM documents WHERE id = 2"));
    }

    [Fact]
    public async Task The_locks_endpoint_shows_a_waiting_request_behind_its_blocker()
    {
        await Database.ExecuteAsync("INSERT INTO stock VALUES (3, 'held', 5)");
        await using var holder = await Database.DataSource.OpenConnectionAsync();
        await using var held = await holder.BeginTransactionAsync();
        await holder.ExecuteAsync("SELECT 1 FROM stock WHERE id = 3 FOR UPDATE", transaction: held);

        var waiting = Client.PostAsJsonAsync("/stock/3/sell", new { quantity = 1 });
        var tree = "";
        for (var polls = 0; polls < 600 && !tree.Contains(holder.ProcessID.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal); polls++)
        {
            await Task.Delay(50);
            tree = await Client.GetStringAsync("/locks");
        }

        Assert.Contains(holder.ProcessID.ToString(System.Globalization.CultureInfo.InvariantCulture), tree, StringComparison.Ordinal);
        Assert.Contains("stock", tree, StringComparison.Ordinal);
        await held.CommitAsync();
        Assert.Equal(HttpStatusCode.OK, (await waiting).StatusCode);
    }

    [Fact]
    public async Task Readiness_checks_lock_waits_and_liveness_does_not_touch_the_database()
    {
        var ready = await Client.GetAsync("/health/ready");
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        Assert.Equal("Healthy", await ready.Content.ReadAsStringAsync());

        var live = await Client.GetAsync("/health/live");
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
    }

    [Fact]
    public async Task Metrics_show_rowlocks_instruments_after_requests()
    {
        await Database.ExecuteAsync("INSERT INTO stock VALUES (4, 'metered', 100)");
        var sales = await Task.WhenAll(Enumerable.Range(0, Requests).Select(_ =>
            Client.PostAsJsonAsync("/stock/4/sell", new { quantity = 1 })));
        Assert.All(sales, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));

        var metrics = await Client.GetStringAsync("/metrics");
        Assert.Contains("rowlock_unit_of_work_duration_seconds_bucket", metrics, StringComparison.Ordinal);
        Assert.Contains("rowlock_operation=\"stock.sell\"", metrics, StringComparison.Ordinal);
        Assert.Contains("rowlock_lock_wait_duration_seconds", metrics, StringComparison.Ordinal);
    }
}
