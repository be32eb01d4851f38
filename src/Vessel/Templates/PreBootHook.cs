namespace Vessel.Templates;

/// <summary>
/// Host-side work on a rootfs after it is ready and before the VM boots (E2B's PreBootFn,
/// seed 000): the one hook type of sandboxes (<c>SandboxOptions.PreBootHooks</c>) and template
/// builds (<see cref="StepSessionRequest.PreBootHooks"/>, <see cref="ReservedBlocks.Hooks"/>).
/// A hook that throws aborts what it was part of, which then removes everything it made.
/// </summary>
public sealed class PreBootHook
{
    private readonly Func<PreBootContext, CancellationToken, Task> _run;

    public PreBootHook(string name, Func<PreBootContext, CancellationToken, Task> run)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(run);
        Name = name;
        _run = run;
    }

    /// <summary>Said in progress output and in the error when the hook fails.</summary>
    public string Name { get; }

    public Task RunAsync(PreBootContext context, CancellationToken cancellationToken) => _run(context, cancellationToken);

    /// <summary>
    /// Runs <paramref name="hooks"/> in order, reporting each as it starts; a failure (other than
    /// cancellation) becomes a <see cref="VesselException"/> naming the hook, with the hook's own
    /// reason when it gave one.
    /// </summary>
    public static async Task RunAllAsync(IReadOnlyList<PreBootHook> hooks, PreBootContext context, Action<string>? report, CancellationToken cancellationToken)
    {
        foreach (PreBootHook hook in hooks)
        {
            report?.Invoke($"pre-boot hook: {hook.Name}");
            try
            {
                await hook.RunAsync(context, cancellationToken);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                throw new VesselException(e is VesselException v ? v.Reason : VesselErrorReason.ToolFailed,
                    $"Pre-boot hook '{hook.Name}' failed before the VM started: {e.Message}", e);
            }
        }
    }
}
