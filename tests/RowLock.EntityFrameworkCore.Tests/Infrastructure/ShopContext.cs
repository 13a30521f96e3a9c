using Microsoft.EntityFrameworkCore;

namespace RowLock.EntityFrameworkCore.Tests.Infrastructure;

public sealed class Order
{
    public long Id { get; set; }

    public string Customer { get; set; } = "";

    public int Total { get; set; }

    public List<OrderLine> Lines { get; set; } = [];
}

public sealed class OrderLine
{
    public long Id { get; set; }

    public long OrderId { get; set; }

    public int Qty { get; set; }
}

public sealed class Counter
{
    public int Id { get; set; }

    public int Value { get; set; }
}

public sealed class CostLayer
{
    public long Id { get; set; }

    public DateTime Created { get; set; }

    public int RemainingQty { get; set; }
}

public sealed class Invoice
{
    public long Id { get; set; }

    public string State { get; set; } = "draft";

    public int Posts { get; set; }
}

public sealed class Document
{
    public int Id { get; set; }

    public string Body { get; set; } = "";
}

/// <summary>The tests' model: lower-case table names (as most PostgreSQL schemas have), default column names.</summary>
public sealed class ShopContext(DbContextOptions<ShopContext> options) : DbContext(options)
{
    public DbSet<Order> Orders => Set<Order>();

    public DbSet<OrderLine> OrderLines => Set<OrderLine>();

    public DbSet<Counter> Counters => Set<Counter>();

    public DbSet<CostLayer> CostLayers => Set<CostLayer>();

    public DbSet<Invoice> Invoices => Set<Invoice>();

    public DbSet<Document> Documents => Set<Document>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        modelBuilder.Entity<Order>().ToTable("orders");
        modelBuilder.Entity<OrderLine>().ToTable("order_lines");
        modelBuilder.Entity<Counter>().ToTable("counters").Property(c => c.Id).ValueGeneratedNever();
        modelBuilder.Entity<CostLayer>().ToTable("cost_layers");
        modelBuilder.Entity<Invoice>().ToTable("invoices").Property(i => i.Id).ValueGeneratedNever();
        modelBuilder.Entity<Document>().ToTable("documents").Property(d => d.Id).ValueGeneratedNever();
    }
}
