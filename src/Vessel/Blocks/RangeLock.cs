namespace Vessel.Blocks;

/// <summary>
/// Excludes overlapping writers: a holder of <c>[start, end)</c> waits for every overlapping
/// holder to release. Disjoint ranges proceed in parallel.
/// </summary>
internal sealed class RangeLock
{
    private readonly List<Holder> _held = [];

    public async ValueTask<IDisposable> AcquireAsync(long start, long end, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_held)
            {
                Holder? conflict = null;
                foreach (Holder h in _held)
                {
                    if (h.Start < end && start < h.End)
                    {
                        conflict = h;
                        break;
                    }
                }
                if (conflict is null)
                {
                    var mine = new Holder(this, start, end);
                    _held.Add(mine);
                    return mine;
                }
                wait = conflict.Released.Task;
            }
            await wait.WaitAsync(cancellationToken);
        }
    }

    private sealed class Holder(RangeLock owner, long start, long end) : IDisposable
    {
        public long Start { get; } = start;

        public long End { get; } = end;

        public TaskCompletionSource Released { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Dispose()
        {
            lock (owner._held)
            {
                if (!owner._held.Remove(this))
                {
                    return;
                }
            }
            Released.TrySetResult();
        }
    }
}
