#:project ../../src/Vessel/Vessel.csproj
#:property PublishAot=false

// Pulls an image through Vessel's image sources and reads every layer to its end
// (download, sha256 of the blob, decompression, sha256 of the tar against the diff_id).
// Usage: dotnet run pull.cs -- SOURCE [--insecure]
using System.Diagnostics;
using Vessel.Oci;

var options = new ImageSourceOptions { Insecure = args.Contains("--insecure") };
var clock = Stopwatch.StartNew();
long bytes = 0;
await using (IImageSource source = await ImageSources.OpenAsync(args[0], options, CancellationToken.None))
{
    ResolvedImage image = await source.ResolveAsync(CancellationToken.None);
    byte[] buffer = new byte[1 << 20];
    for (int i = 0; i < image.Layers.Count; i++)
    {
        await using Stream layer = await source.OpenLayerAsync(i, CancellationToken.None);
        int n;
        while ((n = await layer.ReadAsync(buffer, CancellationToken.None)) > 0)
        {
            bytes += n;
        }
    }
}
Console.WriteLine($"{clock.Elapsed.TotalSeconds:0.000} {bytes} cpu {Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds:0.000}");
