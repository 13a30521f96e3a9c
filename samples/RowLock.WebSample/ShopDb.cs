using Microsoft.EntityFrameworkCore;

namespace RowLock.WebSample;

public sealed class Order
{
    public int Id { get; set; }

    public decimal Total { get; set; }

    public int LineCount { get; set; }
}

public sealed class ShopDb(DbContextOptions<ShopDb> options) : DbContext(options)
{
    public DbSet<Order> Orders => Set<Order>();

    protected override void OnModelCreating(ModelBuilder modelBuilder)
    {
        var order = modelBuilder.Entity<Order>().ToTable("orders");
        order.Property(o => o.Id).HasColumnName("id").ValueGeneratedNever();
        order.Property(o => o.Total).HasColumnName("total").HasColumnType("numeric(12,2)");
        order.Property(o => o.LineCount).HasColumnName("line_count");
    }
}
