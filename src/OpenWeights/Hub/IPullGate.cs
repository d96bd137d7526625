namespace OpenWeights.Hub;

/// <summary>What is about to be pulled, shown to a <see cref="IPullGate"/> before any weights are downloaded.</summary>
/// <param name="License">License id from the model card (e.g. "apache-2.0", "llama3.2"), or null.</param>
/// <param name="Gated">"auto"/"manual" when the hub gates the repository, else null.</param>
/// <param name="AcceptLicense">The user accepted the licence (<see cref="PullOptions.AcceptLicense"/>).</param>
public sealed record PullContext(string RepoId, string Revision, string Commit, string? License, string? Gated,
    IReadOnlyList<HubFile> Files, bool AcceptLicense);

/// <summary>
/// A hook called before a pull downloads anything (the catalog's license gate implements it): throw an
/// <see cref="OpenWeightsException"/> to refuse, for example when a license needs accepting (<see cref="LicenseNotAcceptedException"/>).
/// </summary>
public interface IPullGate
{
    void BeforePull(PullContext context);
}

/// <summary>The default gate: lets every pull through.</summary>
public sealed class AllowAllPullGate : IPullGate
{
    public static readonly AllowAllPullGate Instance = new();
    public void BeforePull(PullContext context) { }
}

/// <summary>A gate from a delegate.</summary>
public sealed class DelegatePullGate(Action<PullContext> action) : IPullGate
{
    public void BeforePull(PullContext context) => action(context);
}
