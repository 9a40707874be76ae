import { create, createFileRegistry } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema, type DescriptorProto, type FileDescriptorProto } from '@bufbuild/protobuf/wkt';
import { status, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { checkHealth } from '../support/health-status';
import { descriptorFiles, useReflection } from '../support/reflection';

describe('server reflection and health', () => {
  const discovery = useReflection();

  it('lists the credits and health services without an API key', async () => {
    const response = await discovery.ask({ list_services: '' });
    const names = response.list_services_response!.service.map((s) => s.name);
    expect(names).to.include.members(['credits.v1.PromotionalCreditService', 'grpc.health.v1.Health']);
  });

  describe('the descriptor of credits/v1/promotional_credit_service.proto', () => {
    let files: FileDescriptorProto[];
    let file: FileDescriptorProto;

    before(async () => {
      const response = await discovery.ask({ file_containing_symbol: 'credits.v1.PromotionalCreditService' });
      expect(response.error_response, response.error_response?.error_message).to.equal(undefined);
      files = descriptorFiles(response);
      file = files.find((f) => f.name === 'credits/v1/promotional_credit_service.proto')!;
      expect(file, `files: ${files.map((f) => f.name).join(', ')}`).to.not.equal(undefined);
    });

    it('has the package, the service and its RPCs', () => {
      expect(file.package).to.equal('credits.v1');
      const service = file.service.find((s) => s.name === 'PromotionalCreditService')!;
      expect(service.method.map((m) => m.name)).to.deep.equal([
        'AddPromotionalCredits',
        'DeductPromotionalCredits',
        'SetPromotionalCredits',
        'GetPromotionalCredit',
        'ListPromotionalCredits',
        'GetCustomerBalance',
        'ListPromotionalCreditLots',
        'ReversePromotionalCredit',
        'HoldPromotionalCredits',
        'CapturePromotionalCreditHold',
        'ReleasePromotionalCreditHold',
        'GetPromotionalCreditHold',
        'ListPromotionalCreditHolds',
      ]);
      expect(service.method[0]!.inputType).to.equal('.credits.v1.AddPromotionalCreditsRequest');
    });

    it('has snake_case field names as written in proto/', () => {
      const fields = (message: string) => file.messageType.find((m) => m.name === message)!.field.map((f) => f.name);
      expect(fields('AddPromotionalCreditsRequest')).to.deep.equal([
        'customer_id',
        'amount',
        'amount_decimal',
        'currency_code',
        'description',
        'credit_type',
        'reference',
        'expire_time',
        'metadata',
        'validate_only',
      ]);
      expect(fields('PromotionalCredit')).to.include.members(['customer_id', 'amount_decimal', 'closing_balance', 'done_by', 'create_time']);
      expect(fields('ListPromotionalCreditsRequest')).to.deep.equal(['page_size', 'page_token', 'id', 'customer_id', 'type', 'create_time', 'origin', 'metadata']);
      for (const message of file.messageType) {
        for (const field of message.field) expect(field.name, `${message.name}.${field.name}`).to.match(/^[a-z][a-z0-9_]*$/);
      }
    });

    it('carries the proto comments (source_code_info)', () => {
      expect(file.sourceCodeInfo, 'source_code_info').to.not.equal(undefined);
      const comments = file.sourceCodeInfo!.location.map((l) => l.leadingComments).filter((c) => c !== '');
      expect(comments.length).to.be.greaterThan(50);
      expect(comments.some((c) => c.includes('Adds credits to a customer'))).to.equal(true);
      expect(comments.some((c) => c.includes('INSUFFICIENT_BALANCE'))).to.equal(true);
    });

    it('comes with the files it imports, also snake_case', () => {
      expect(file.dependency).to.include.members(['credits/v1/filters.proto', 'google/protobuf/timestamp.proto']);
      const filters = files.find((f) => f.name === 'credits/v1/filters.proto');
      expect(filters, 'filters.proto served with it').to.not.equal(undefined);
      expect(filters!.messageType.find((m) => m.name === 'StringFilter')!.field.map((f) => f.name)).to.deep.equal(['is', 'is_not', 'starts_with']);
    });
  });

  it('describes the health service too', async () => {
    const response = await discovery.ask({ file_containing_symbol: 'grpc.health.v1.Health' });
    const files = descriptorFiles(response);
    const health = files.find((f) => f.service.some((s) => s.name === 'Health'))!;
    expect(health.package).to.equal('grpc.health.v1');
    expect(health.service[0]!.method.map((m) => m.name)).to.include.members(['Check', 'Watch']);
  });

  it('serves every service in files a protobuf toolchain accepts, as protoc writes them', async () => {
    // grpcurl (Go's protodesc) refuses a file whose type names do not resolve
    // or whose map entries are not named <Field>Entry; proto-loader's health
    // file had both ("Statuses", "HealthCheckResponse").
    const listed = await discovery.ask({ list_services: '' });
    const services = listed.list_services_response!.service.map((s) => s.name).filter((name) => !name.startsWith('grpc.reflection.'));
    expect(services).to.include('grpc.health.v1.Health');
    for (const service of services) {
      // As grpcurl does: the symbol's file, then any import still missing by its name.
      const files = descriptorFiles(await discovery.ask({ file_containing_symbol: service }));
      const missing = () => files.flatMap((f) => f.dependency).find((d) => !files.some((f) => f.name === d));
      for (let name = missing(); name !== undefined; name = missing()) files.push(...descriptorFiles(await discovery.ask({ file_by_filename: name })));
      // Imports first (createFileRegistry's own resolver misorders a shared import).
      const ordered: FileDescriptorProto[] = [];
      const place = (file: FileDescriptorProto) => {
        if (ordered.includes(file)) return;
        for (const name of file.dependency) place(files.find((f) => f.name === name)!);
        ordered.push(file);
      };
      files.forEach(place);
      expect(() => createFileRegistry(create(FileDescriptorSetSchema, { file: ordered })), service).to.not.throw();
      for (const file of files) {
        const check = (message: DescriptorProto, scope: string) => {
          for (const field of message.field) {
            if (field.typeName !== '') expect(field.typeName, `${scope}.${field.name}`).to.match(/^\./);
            const entry = message.nestedType.find((n) => n.options?.mapEntry && `.${scope}.${n.name}` === field.typeName);
            if (entry) expect(entry.name, `${scope}.${field.name}`).to.equal(`${field.name.replace(/(^|_)([a-z])/g, (_, __, c: string) => c.toUpperCase())}Entry`);
          }
          for (const nested of message.nestedType) check(nested, `${scope}.${nested.name}`);
        };
        for (const message of file.messageType) check(message, `${file.package}.${message.name}`);
      }
    }
  });

  it('answers NOT_FOUND for unknown symbols', async () => {
    const response = await discovery.ask({ file_containing_symbol: 'credits.v1.NoSuchService' });
    expect(response.error_response!.error_code).to.equal(status.NOT_FOUND);
  });

  describe('grpc.health.v1.Health', () => {
    const check = (service: string) => checkHealth(discovery.server.address, service);

    it('answers SERVING for the server and for the credits service, without an API key', async () => {
      expect(await check('')).to.equal('SERVING');
      expect(await check('credits.v1.PromotionalCreditService')).to.equal('SERVING');
    });

    it('answers NOT_FOUND for a service it does not know', async () => {
      const err = await check('credits.v1.Nope').then(
        () => undefined,
        (e: ServiceError) => e,
      );
      expect(err?.code).to.equal(status.NOT_FOUND);
    });
  });
});
