namespace Vessel.IntegrationTests.Templates;

/// <summary>A home for VM template builds in tests: state, layers, a sandbox manager and a builder on them.</summary>
internal sealed record TemplateHome(string Path, TemplateBuilder Builder, StateStore State, LayerStore Layers, SandboxManager Manager)
{
    /// <summary>
    /// Opens <paramref name="name"/> under <paramref name="stateDirectory"/> (an environment's state
    /// directory, so that its leftover checks see these VMs too).
    /// </summary>
    public static async Task<TemplateHome> OpenAsync(string stateDirectory, string name, GuestKit kit, CancellationToken ct)
    {
        string path = System.IO.Path.Combine(stateDirectory, name);
        Directory.CreateDirectory(path);
        StateStore state = await StateStore.OpenAsync(System.IO.Path.Combine(path, "state.db"), ct);
        LayerStore layers = LayerStore.OpenDirectory(System.IO.Path.Combine(path, "blocks"));
        var manager = new SandboxManager(path, kit);
        return new TemplateHome(path, new TemplateBuilder(state, layers, new SandboxStepRunner(manager), path), state, layers, manager);
    }
}
