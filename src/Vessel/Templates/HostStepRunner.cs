using Vessel.Common;
using Vessel.Nbd;

namespace Vessel.Templates;

/// <summary>
/// Runs the steps that need no VM on the host, on the layer's file view (nbdfuse), with
/// debugfs: COPY writes the tree, WORKDIR creates the directory, ENV and USER change only
/// the config. The pre-boot hooks run on the same view when the session starts, exactly
/// where a VM would boot. RUN and a start command need the sandbox runtime and fail with a
/// message saying so. The view is mounted per operation, so every write has reached the
/// layer when a call returns.
/// </summary>
internal sealed class HostStepRunner : IStepRunner
{
    public string Description => "host (COPY/ENV/WORKDIR/USER without a VM)";

    public string SnapshotIdentity => "host";

    public async Task<IStepSession> StartAsync(StepSessionRequest request, CancellationToken cancellationToken)
    {
        var session = new Session(request);
        if (request.PreBootHooks.Count > 0)
        {
            await session.WithViewAsync(image => PreBootHook.RunAllAsync(request.PreBootHooks, new PreBootContext(image, request.WorkDirectory), request.Report, cancellationToken), cancellationToken);
        }
        return session;
    }

    private sealed class Session(StepSessionRequest request) : IStepSession
    {
        public async Task RunAsync(TemplateStep step, TemplateConfig config, CopySource? copy, Action<string> output, CancellationToken cancellationToken)
        {
            switch (step.Kind)
            {
                case StepKind.Copy:
                    output($"copying {copy!.Entries.Count} entries to {step.Arguments[1]}");
                    await WithViewAsync(image => DebugfsWriter.CopyTreeAsync(image, copy, step.Arguments[1], DateTimeOffset.UtcNow, cancellationToken), cancellationToken);
                    break;
                case StepKind.Workdir:
                    await WithViewAsync(image => DebugfsWriter.MakeDirectoriesAsync(image, step.Arguments[0], DateTimeOffset.UtcNow, cancellationToken), cancellationToken);
                    break;
                case StepKind.Run:
                    throw new VesselException(VesselErrorReason.Unsupported,
                        $"{step}: RUN steps execute in a build VM through the sandbox runtime, which this Vessel build does not include yet; "
                        + "use COPY/ENV/WORKDIR/USER steps, or build on a Vessel with the Sandboxes module.");
                default:
                    break; // ENV and USER change the config only
            }
        }

        public Task<string?> FinalizeAsync(TemplateConfig config, string snapshotDirectory, Action<string> output, CancellationToken cancellationToken)
        {
            if (config.Start is not null)
            {
                throw new VesselException(VesselErrorReason.Unsupported,
                    "the start command and ready check run in the template's VM before its snapshot, which needs the sandbox runtime (not in this Vessel build); remove 'start'/'ready' or build on a Vessel with the Sandboxes module.");
            }
            output("no sandbox runtime: the template is its disk layer and config (no memory snapshot)");
            return Task.FromResult<string?>(null);
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;

        public async Task WithViewAsync(Func<string, Task> work, CancellationToken cancellationToken)
        {
            NbdFuseFile view = await NbdFuseFile.MountAsync(request.Disk, request.WorkDirectory, cancellationToken);
            await CleanupScope.RunAsync(view, async v =>
            {
                await work(v.FilePath);
                return 0;
            });
        }
    }
}
