/** @type {import('next').NextConfig} */
export default {
  // The SDK is a local package (file:../../sdk/node); keep it server-side.
  experimental: { serverComponentsExternalPackages: ["@payrail/node", "standardwebhooks"] },
};
