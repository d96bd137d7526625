using System.Security.Cryptography;

namespace OpenWeights.Hub.Bundles;

/// <summary>
/// ECDSA signatures over manifest.json's bytes (SHA-256, DER-encoded as openssl writes them, so
/// <c>openssl dgst -sha256 -verify pub.pem -signature manifest.sig manifest.json</c> checks a bundle too).
/// Keys are PEM: a private key (PKCS#8 "PRIVATE KEY" or "EC PRIVATE KEY") to sign, a "PUBLIC KEY" to trust.
/// </summary>
public static class BundleSigning
{
    public static byte[] Sign(byte[] manifest, string privateKeyFile)
    {
        using var key = LoadKey(privateKeyFile, needPrivate: true);
        return key.SignData(manifest, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
    }

    public static bool Verify(byte[] manifest, byte[] signature, string publicKeyFile)
    {
        using var key = LoadKey(publicKeyFile, needPrivate: false);
        try { return key.VerifyData(manifest, signature, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence); }
        catch (CryptographicException) { return false; }
    }

    /// <summary>Writes a new P-256 key pair: the private key (PKCS#8 PEM, owner-only where the OS has modes) and FILE.pub.</summary>
    public static (string PrivateKey, string PublicKey) Generate(string file)
    {
        if (File.Exists(file)) throw new OpenWeightsException($"{file} exists; not overwriting a key");
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        string pub = file + ".pub";
        WriteAtomic(file, key.ExportPkcs8PrivateKeyPem(), secret: true);
        WriteAtomic(pub, key.ExportSubjectPublicKeyInfoPem(), secret: false);
        return (file, pub);
    }

    private static void WriteAtomic(string path, string text, bool secret)
    {
        var tmp = path + ".tmp-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            var opts = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
            if (secret && !OperatingSystem.IsWindows()) opts.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            using (var s = new StreamWriter(new FileStream(tmp, opts))) s.Write(text + "\n");
            File.Move(tmp, path);
        }
        finally { if (File.Exists(tmp)) File.Delete(tmp); }
    }

    private static ECDsa LoadKey(string file, bool needPrivate)
    {
        if (!File.Exists(file)) throw new OpenWeightsException($"key file not found: {file}");
        string pem = File.ReadAllText(file);
        var key = ECDsa.Create();
        try { key.ImportFromPem(pem); }
        catch (Exception e) when (e is ArgumentException or CryptographicException)
        {
            key.Dispose();
            throw new OpenWeightsException($"{file} holds no ECDSA key in PEM (BundleSigning.Generate makes one; SECURITY.md shows the openssl commands)");
        }
        if (needPrivate)
        {
            try { key.ExportParameters(true); }
            catch (CryptographicException) { key.Dispose(); throw new OpenWeightsException($"{file} holds a public key; signing needs the private key"); }
        }
        return key;
    }
}
