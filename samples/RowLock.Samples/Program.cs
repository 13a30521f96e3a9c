using RowLock.Samples.Lab;

// The RowLock lab: each concurrency scenario run twice, as teams often write it and with RowLock, side by side.
// Ctrl+C stops the run and still removes the throwaway server.
using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    stop.Cancel();
};

return await LabProgram.RunAsync(args, Console.Out, Console.Error, stop.Token);
