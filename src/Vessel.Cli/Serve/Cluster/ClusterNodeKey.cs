using Vessel.Service;
using Vessel.State;

namespace Vessel.Cli.Serve.Cluster;

/// <summary>
/// The API key a node sends when it forwards a request that came on its unix socket (which
/// needs no key) to another node's TCP API. An ordinary key in the shared <c>api_keys</c> table,
/// named <c>node NAME</c>, made anew at each start (the previous one of that name is removed).
/// </summary>
internal sealed record ClusterNodeKey(string Node, string Key)
{
    public static string KeyName(string node) => "node " + node;

    public static async Task<ClusterNodeKey> CreateAsync(StateStore state, string node, CancellationToken cancellationToken)
    {
        foreach (ApiKeyRecord old in (await state.ListApiKeysAsync(cancellationToken)).Where(k => k.Name == KeyName(node)))
        {
            await state.DeleteApiKeyAsync(old.Id, cancellationToken);
        }
        (_, string key) = await ApiKeys.CreateAsync(state, KeyName(node), TimeProvider.System, cancellationToken);
        return new ClusterNodeKey(node, key);
    }
}
